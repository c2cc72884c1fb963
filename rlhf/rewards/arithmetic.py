"""Exact-match reward for the synthetic addition task (``rlhf.data.arithmetic``)."""

from __future__ import annotations


def arithmetic_score(response: str, ground_truth: str) -> float:
    """1.0 if the response is exactly the answer (surrounding whitespace ignored), else 0.0.

    Args:
        response: decoded model output, special tokens already removed.
        ground_truth: the expected sum as a string, e.g. "52".

    Returns:
        1.0 or 0.0. No partial credit: "052", "52.0" or "52 apples" all score 0.0.
    """
    return 1.0 if response.strip() == ground_truth.strip() else 0.0
