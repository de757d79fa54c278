"""A local Amazon Braket endpoint: real HTTP, the real rest-json wire format, quotas, faults.

It is the embedded default for the demo and the ground truth for tests. See README "Emulator"
for the behaviours it picks where the real service is undocumented.
"""
