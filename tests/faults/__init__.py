"""Fault injection for the whole appliance: `lipsyncd up` with real processes, faults on a seeded schedule,
and an audit that proves nothing was lost. Run `python -m tests.faults.runner --help` (see RELIABILITY.md).
"""
