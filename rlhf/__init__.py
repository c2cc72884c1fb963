"""rlhf: reinforcement learning for open LLMs (RLHF and reasoning RL).

Importing this package is cheap: it imports neither Ray, DeepSpeed nor vLLM (and not even
torch); every heavy backend is imported inside the module that uses it.
"""

__version__ = "0.1.0"
