"""Evaluation: greedy accuracy on held-out prompts (pass@k and maj@k come with issue 6)."""
