"""What the scripts and the tests run the trainer with, kept out of the shipped `rlhf` package:
benchmark arms and the watcher of whole runs (:mod:`rlhf_harness.bench`), kill-and-resume fault
injection (:mod:`rlhf_harness.faults`), the /proc readers both use (:mod:`rlhf_harness.procs`) and
the shipped recipes' tiny CPU variants (:mod:`rlhf_harness.tiny_recipes`).

Scripts import it as `python scripts/NAME.py` puts scripts/ first on sys.path; the tests through
pytest's `pythonpath` option (pyproject.toml). Nothing in `rlhf/` imports it.
"""
