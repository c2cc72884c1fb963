"""Majority voting's ballots: the final answer of each response in a canonical form, and the
answer classes of one prompt's samples (pure string functions; the estimator is
:func:`rlhf.eval.passk.maj_at_k`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rlhf.rewards.answers import gsm8k_final_answer, normalize_number
from rlhf.rewards.verifiers import normalize_answer

_PLAIN_NUMBER = re.compile(
    r"""[-−]?\\?\$?\s*[-−]?
    (?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+)?      # 18, 1,234.5, .5, 3/4
    \s*(?:%|[A-Za-z][A-Za-z ]*)?\.?                   # 50%, 18 dollars, a final period
    |[-−]?\\[dt]?frac\{\d+\}\{\d+\}                  # \frac{3}{4}
    """,
    re.VERBOSE,
)
"""An answer that is one number, possibly with a currency sign, a percent sign or unit words."""


def answer_key(response: str) -> str | None:
    """The final answer of `response` as a key that equal answers share, or None without one.

    The answer is found like the GSM8K verifier finds it (`####`, `\\boxed{}`, "the answer
    is", else the last number: :func:`rlhf.rewards.answers.gsm8k_final_answer`). A plain number
    becomes its value ("$1,234." and "1234 dollars" -> "1234", "3/4" and "0.75" -> "0.75");
    anything else is compared after :func:`rlhf.rewards.verifiers.normalize_answer` (spacing,
    `\\left`, `\\text{}`), so equivalent forms that differ more (`\\sqrt{2}/2` and
    `\\frac{\\sqrt2}{2}`) still vote apart.
    """
    answer = gsm8k_final_answer(response)
    if answer is None:
        return None
    answer = answer.strip()
    if _PLAIN_NUMBER.fullmatch(answer):
        value = normalize_number(answer)
        if value is not None:
            return format(value + 0.0, ".12g")  # + 0.0 turns -0.0 into 0.0
    return normalize_answer(answer) or None


@dataclass(frozen=True)
class Ballots:
    """One prompt's n samples grouped by answer: what :func:`rlhf.eval.passk.maj_at_k` reads."""

    class_sizes: tuple[int, ...]
    """Samples per distinct answer, in order of first appearance."""
    class_correct: tuple[bool, ...]
    """The verifier's verdict on each class: that of its first sample."""
    abstentions: int
    """Samples without an answer."""


def ballots(answers: Sequence[str | None], correct: Sequence[bool]) -> Ballots:
    """Group one prompt's samples by answer key.

    Args:
        answers: [n] each sample's :func:`answer_key` (None: no answer).
        correct: [n] the verifier's verdict on each sample.

    A class's verdict is that of its first sample, as if the verifier judged the majority
    answer itself; samples with equal keys almost always share their verdict (an exact-match
    verifier can tell "052" from "52", which vote together).
    """
    assert len(answers) == len(correct), (len(answers), len(correct))
    sizes: dict[str, int] = {}
    verdicts: dict[str, bool] = {}
    for answer, verdict in zip(answers, correct):
        if answer is None:
            continue
        sizes[answer] = sizes.get(answer, 0) + 1
        verdicts.setdefault(answer, bool(verdict))
    abstentions = sum(answer is None for answer in answers)
    return Ballots(tuple(sizes.values()), tuple(verdicts[a] for a in sizes), abstentions)
