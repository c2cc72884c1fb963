"""`rlhf report RUN`: one self-contained HTML page of a run (plots, numbers, samples, config)."""
