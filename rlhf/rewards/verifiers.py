"""Built-in rule verifiers: `fn(response, ground_truth) -> 1.0 | 0.0` for GSM8K and MATH.

Both are pure functions of two strings, safe to run in a `VerifierPool` worker (they are
top-level, so they pickle by reference). `math_score` relies on math-verify (Hugging Face),
imported on first use so that GSM8K workers never pay for sympy.
"""

from __future__ import annotations

import functools
import math
import re
import threading

from rlhf.data.answers import gsm8k_ground_truth, last_boxed
from rlhf.rewards.answers import gsm8k_final_answer, normalize_number

MATH_VERIFY_TIMEOUT_S = 2
"""math-verify's own limit (whole seconds, it uses `signal.alarm`) for one parse or one
comparison. It applies only in a main thread; the pool's per-sample timeout is the hard cap."""

_REL_TOL = 1e-6


def gsm8k_score(response: str, ground_truth: str) -> float:
    """1.0 if the response's final answer equals the GSM8K reference numerically, else 0.0.

    Args:
        response: the model output; its answer is found by `gsm8k_final_answer` (`####`, then
            `\\boxed{}`, then "the answer is", then the last number).
        ground_truth: a bare number ("18", "1,600") or a full GSM8K solution ending in `#### N`.

    Numbers match within a relative (and absolute) tolerance of 1e-6, so "18.00" = "18". A
    reference that is not a number (other datasets) is compared as a stripped string.
    """
    predicted_text = gsm8k_final_answer(response)
    if predicted_text is None:
        return 0.0
    reference_text = gsm8k_ground_truth(ground_truth)
    reference = normalize_number(reference_text)
    if reference is None:
        return float(predicted_text.strip() == reference_text)
    predicted = normalize_number(predicted_text)
    if predicted is None:
        return 0.0
    return float(math.isclose(predicted, reference, rel_tol=_REL_TOL, abs_tol=_REL_TOL))


def math_score(response: str, ground_truth: str) -> float:
    """1.0 if the last `\\boxed{}` of the response is equivalent to the reference, else 0.0.

    Args:
        response: the model output. Without a (non-empty) `\\boxed{}` answer it scores 0.0.
        ground_truth: a bare answer ("\\frac{1}{2}", "(0, 1]") or a full solution whose last
            `\\boxed{}` holds the answer (the MATH dataset's `solution` field).

    Equivalence: equal after `normalize_answer` (cheap, and the fallback when math-verify
    cannot parse an answer), else math-verify's symbolic comparison (fractions, radicals,
    intervals, sets, matrices, equations `x=2` vs `2`, units and degrees).
    """
    predicted = last_boxed(response)
    if not predicted:
        return 0.0
    reference = last_boxed(ground_truth) or ground_truth.strip()
    normalized = normalize_answer(predicted)
    if normalized and normalized == normalize_answer(reference):
        return 1.0
    from math_verify import verify

    gold, target = _parse_reference(reference), _parse_answer(predicted)
    if not gold or not target:
        return 0.0
    return float(verify(list(gold), target, timeout_seconds=_math_verify_timeout()))


def _math_verify_timeout() -> int | None:
    # math-verify's timeout is signal.alarm, which raises ValueError outside the main thread.
    return MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


def _parse_answer(answer: str) -> list:
    from math_verify import parse

    return parse(f"\\boxed{{{answer}}}", parsing_timeout=_math_verify_timeout())


@functools.lru_cache(maxsize=4096)
def _parse_reference(answer: str) -> tuple:
    # The n samples of a prompt share its reference: parse it once per worker.
    return tuple(_parse_answer(answer))


def warm_up_math_verify() -> None:
    """Import math-verify and run one comparison (about a second), so that a worker's first
    real sample does not spend its timeout on imports."""
    math_score("\\boxed{\\frac{1}{2}}", "0.5")


_SPACING = re.compile(r"\\left|\\right|\\[!,;:]|\\ |\s+")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_TEXT = re.compile(r"\\(?:text|textbf|mbox|mathrm)\s*\{([^{}]*)\}")
_UNIT_AFTER_NUMBER = re.compile(r"(?<=[\d}])\s*\\(?:text|mbox|mathrm)\s*\{[^{}]*\}")


def normalize_answer(answer: str) -> str:
    """A canonical string for exact comparison: no spacing, `\\left`/`\\right`, `\\!`, degree
    marks, `\\$`, trailing period; `\\text{...}` units after a number removed, other `\\text{X}`
    unwrapped to X; `\\dfrac`/`\\tfrac` -> `\\frac`."""
    text = _UNIT_AFTER_NUMBER.sub("", answer)
    text = _TEXT.sub(r"\1", text)
    text = _DEGREES.sub("", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\$", "")
    text = _SPACING.sub("", text)
    return text.rstrip(".")
