"""The two policies of the cleanup issue, exactly as written there: tests prove they are
valid as written and act as described, and `make demo` runs them."""

SANDBOX_EXAMPLE = """\
policies:
  - name: sandbox-cleanup
    description: cancel the queued tasks of one bucket/prefix, as the seed did by hand
    match:
      regions: [us-west-1]
      devices: ["arn:aws:braket:*::device/qpu/*"]
      statuses: [QUEUED]
      bucket: amazon-braket-masumoto
      prefix: "Sandbox"
      min_age: 24h
    exempt:
      tags: {keep: "true"}
    action: cancel
    mode: enforce
    limits:
      max_cancellations: 50
      max_percent: 100
"""

SHOT_CAP_EXAMPLE = """\
policies:
  - name: daily-shot-cap
    description: when a day's queued shots on Cepheus pass 50, cancel that day's queued ones
    match:
      devices: ["arn:aws:braket:us-west-1::device/qpu/rigetti/Cepheus-1-108Q"]
      statuses: [QUEUED]
    when:
      queued_shots_at_least: 50
    action: cancel
    mode: dry-run
"""
