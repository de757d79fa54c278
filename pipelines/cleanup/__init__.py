"""Policy-driven cleanup of queued Braket tasks (issue 5).

policies.py  the policy schema and the staged loading of policies.yaml
matching.py  candidates from the live API and each policy's decisions on them
audit.py     audit.cleanup_actions, one row per decision
notify.py    the Slack-compatible summary post (off unless BRAKET_CLEANUP_WEBHOOK_URL is set)
job.py       job cancel_queued_tasks: limits first, live re-check, cancel, audit
sensors.py   sensor queued_task_cleanup: evaluate the policies, request runs
plan.py      `braket-warehouse policy validate|plan|enforce`
reference.py docs/policies.md's field reference, generated from the schema
"""
