"""Evaluation: greedy accuracy, pass@k and maj@k on held-out prompts, and the inference-scaling curve."""
