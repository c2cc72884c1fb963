"""Split a response into reasoning steps, as character spans, for process reward models.

A PRM scores a response step by step (Lightman et al. 2023, "Let's Verify Step by Step";
Wang et al. 2024, Math-Shepherd): the response is cut into steps, and the PRM reads a score
after each one. The usual convention, and our default, is one step per paragraph: steps are
separated by a blank line (`\\n\\n`, possibly with whitespace in between).
"""

from __future__ import annotations

import re

BLANK_LINE = r"\n\s*\n"
"""The default step separator: a blank line (a newline, any whitespace, a newline)."""


def split_steps(text: str, pattern: str | None = None) -> list[tuple[int, int]]:
    """Character spans `(start, end)` (end exclusive) of the steps of `text`.

    The text is cut at every match of `pattern` (a regex; None: `BLANK_LINE`); a pattern
    that matches the empty string cuts between characters (`(?=Step)` starts a step at every
    "Step"). Each piece is trimmed of leading and trailing whitespace, so `text[start:end]`
    never starts or ends with whitespace and `end` is one past the step's last visible
    character; pieces that are empty after trimming are dropped. A text without a match is
    one step; a blank text has none.

    Example: split_steps("a\\n\\n b \\n\\n\\nc") == [(0, 1), (4, 5), (9, 10)].
    """
    separator = re.compile(BLANK_LINE if pattern is None else pattern)
    cuts = [0]
    for match in separator.finditer(text):
        cuts.extend([match.start(), match.end()])
    cuts.append(len(text))
    spans = []
    for start, end in zip(cuts[::2], cuts[1::2]):
        piece = text[start:end]
        stripped = piece.lstrip()
        start += len(piece) - len(stripped)
        end = start + len(stripped.rstrip())
        if end > start:
            spans.append((start, end))
    return spans
