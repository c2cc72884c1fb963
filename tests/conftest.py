"""Shared test settings: never reach a model hub (a lookup otherwise stalls for ~45 s)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
