"""Fault injection for the trainer: kill a run at random moments, resume it, check nothing was
lost beyond one save interval and the result equals an uninterrupted run
(`scripts/kill_resume.py`, :mod:`rlhf_harness.faults.kill_resume`)."""
