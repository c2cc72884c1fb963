"""Pure RL math on tensors: advantages, policy losses, KL estimators, entropy, logprobs.

Nothing in this package takes a config object, calls `.item()`, or does I/O. Shapes follow
the notation of :mod:`rlhf.data.batch` (B sequences, R response tokens).
"""
