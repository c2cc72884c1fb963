"""Final-answer extraction from model responses (pure string functions).

Used by the built-in verifiers (`rlhf.rewards.verifiers`) and majority voting:
`gsm8k_final_answer` finds a GSM8K-style answer in a response, `normalize_number` turns the
text of an answer into a float. Reading a reference solution (`last_boxed`,
`gsm8k_ground_truth`) belongs to the data package: :mod:`rlhf.data.answers`.
"""

from __future__ import annotations

import re

from rlhf.data.answers import last_boxed

_NUMBER = re.compile(
    r"""(?:(?<![\w)\]}])(?P<sign>[-−]))?   # a minus sign, unless it is a subtraction (`x - 3`, `2-1`)
    (?:\\?\$\s*)?(?P<sign2>[-−])?           # an optional (LaTeX-escaped) dollar sign: -$5 or $-5
    (?:
        (?P<num>\d+)\s*/\s*(?P<den>\d+)(?!\d|[.,]\d)    # a simple fraction 3/4
      | (?P<value>\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?  # 1,234 or 1,234.50 (thousands separators)
        | \d+(?:\.\d+)?                                # 18 or 12.50
        | \.\d+)                                        # .5
    )""",
    re.VERBOSE,
)
"""A number as written in an answer; `-$5` and `$-5` are both −5."""

_LATEX_FRACTION = re.compile(r"\\[dt]?frac\s*\{\s*([-−]?\d+)\s*\}\s*\{\s*(\d+)\s*\}")
_ANSWER_IS = re.compile(r"the\s+(?:final\s+)?answer\s+is", re.IGNORECASE)


def gsm8k_final_answer(response: str) -> str | None:
    """The final answer of a GSM8K-style response, or None when it has none.

    In order of preference: the line after the last `####`; the last `\\boxed{}`; the rest of
    the line after the last "the answer is" (any case); else the last number in the response.
    The result is text (e.g. "$18." or "18 dollars"); `normalize_number` reads its value.
    """
    if "####" in response:
        tail = response.rsplit("####", 1)[1].strip()
        if tail:
            return tail.splitlines()[0].strip()
    boxed = last_boxed(response)
    if boxed:
        return boxed
    matches = list(_ANSWER_IS.finditer(response))
    if matches:
        tail = response[matches[-1].end() :].strip().lstrip(":").strip()
        if tail:
            return tail.splitlines()[0].strip()
    numbers = list(_NUMBER.finditer(response))
    return numbers[-1].group(0).strip() if numbers else None


def normalize_number(text: str | None) -> float | None:
    """The value of the first number in `text`, or None if there is none.

    Reads `1,234` (thousands separators), `$18` and `\\$18`, `12.50`, `18.` (trailing period),
    `18 dollars` / `5 cm` (words after the number are ignored), `50%` (-> 50.0, the percentage
    as written), `-3` and `−3`, `3/4` and `\\frac{3}{4}` (-> 0.75).
    """
    if text is None:
        return None
    text = _LATEX_FRACTION.sub(r"\1/\2", text)
    match = _NUMBER.search(text)
    if match is None:
        return None
    sign = -1.0 if match.group("sign") or match.group("sign2") else 1.0
    if match.group("num") is not None:
        denominator = int(match.group("den"))
        if denominator == 0:
            return None
        return sign * int(match.group("num")) / denominator
    return sign * float(match.group("value").replace(",", ""))
