"""Reading the reference answer out of a dataset's solution text (pure string functions).

The data package needs these to turn a solution field into a ground truth
(`data.*.answer_extractor`); the reward verifiers use the same functions on ground truths
and on model responses, so they live here, below both:

    last_boxed          the content of the last \\boxed{...} (MATH solutions)
    after_hashes        the answer after the last '####' (GSM8K solutions), or None
    gsm8k_ground_truth  the same, falling back to the whole text (an already bare answer)
"""

from __future__ import annotations

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` or `\\fbox{...}` in `text`, or None.

    Braces nest (`\\boxed{\\frac{1}{2}}` -> `\\frac{1}{2}`); an unclosed box is ignored and the
    previous complete one, if any, is returned. `\\boxed 5` (no braces) gives `5`.
    """
    starts = sorted(i for command in _BOX_COMMANDS for i in _find_all(text, command))
    for start in reversed(starts):
        content = _box_content(text, start)
        if content is not None:
            return content.strip()
    return None


def _find_all(text: str, needle: str) -> list[int]:
    positions, start = [], text.find(needle)
    while start != -1:
        positions.append(start)
        start = text.find(needle, start + 1)
    return positions


def _box_content(text: str, start: int) -> str | None:
    """The braced argument of the box command at `start`, or None if it is not closed."""
    command = next(c for c in _BOX_COMMANDS if text.startswith(c, start))
    i = start + len(command)
    if i < len(text) and text[i] == " ":  # `\boxed 5`: a one-token argument
        match = re.match(r"\s*([^\s$]+)", text[i:])
        return match.group(1) if match else None
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{" and text[j - 1] != "\\":
            depth += 1
        elif text[j] == "}" and text[j - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def after_hashes(text: str) -> str | None:
    """GSM8K: the answer after the last '####' (e.g. '... #### 1,600' -> '1,600'), or None
    when the text has no '####'."""
    return text.rsplit("####", 1)[1].strip() if "####" in text else None


def gsm8k_ground_truth(ground_truth: str) -> str:
    """The answer of a GSM8K reference: the text after its last `####`, else the whole string
    (already a bare answer such as "18"), stripped."""
    answer = after_hashes(ground_truth)
    return answer if answer is not None else ground_truth.strip()
