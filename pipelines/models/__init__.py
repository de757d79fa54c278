"""Models over raw.quantum_tasks: Polars staging (task_facts) and SQL marts (sql/)."""
