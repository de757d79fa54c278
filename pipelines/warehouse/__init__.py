"""The DuckDB warehouse: connections that respect its single writer, and the raw task table."""
