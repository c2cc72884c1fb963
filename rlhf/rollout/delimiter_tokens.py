"""Which tokens can complete a step delimiter: stop candidates for an engine that cannot run
our stop hook inside its decoding loop (vLLM).

The token that completes a match of the delimiter holds the match's last character. So when
the characters a match can end with are known (a blank line, `\\n\\s*\\n`, always ends with a
newline), the engine may stop at every token holding one of them, and a check with
:class:`rlhf.rollout.step_stop.StepStop` tells a real step end from a mere candidate (a single
newline), after which the row goes on. :func:`match_end_test` reads those characters off the
regex's parse tree; for what it does not understand (lookarounds, anchors and backreferences
at the end, flags such as IGNORECASE) it answers None, and the engine falls back to checking
after fixed chunks of tokens.

The parse tree comes from Python's own regex parser (`re._parser`, `sre_parse` before 3.11):
a private module, so any surprise in it also means None, never a wrong answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from rlhf.rollout.step_stop import UNFINISHED_CHARACTER, compile_delimiter

CharTest = Callable[[str], bool]


def match_end_test(delimiter: str | None) -> CharTest | None:
    """A test that is True for every character a match of `delimiter` (None: a blank line) can
    end with, and may be True for others; None when the pattern is beyond this analysis."""
    pattern = compile_delimiter(delimiter)
    try:
        try:
            from re import _parser as parser
        except ImportError:  # Python < 3.11
            import sre_parse as parser
        parsed = parser.parse(pattern.pattern, pattern.flags)
        if parsed.state.flags & (re.IGNORECASE | re.LOCALE):
            return None
        return _ends(parser, list(parsed))
    except Exception:  # a private parser whose shape changed: no analysis
        return None


def _ends(parser, items: list) -> CharTest | None:
    """The test for the last character of a match of the sequence `items` (parser nodes)."""
    if not items:
        return None
    constants = parser  # the node names (LITERAL, IN, ...) live in the parser's namespace
    op, argument = items[-1]
    if op is constants.LITERAL:
        return lambda ch, c=chr(argument): ch == c
    if op is constants.IN:
        return _class_test(constants, argument)
    if op is constants.SUBPATTERN:
        _group, add_flags, del_flags, inner = argument
        return None if add_flags or del_flags else _ends(parser, items[:-1] + list(inner))
    if op is constants.BRANCH:
        return _union([_ends(parser, items[:-1] + list(branch)) for branch in argument[1]])
    if op in (constants.MAX_REPEAT, constants.MIN_REPEAT):
        low, _high, inner = argument
        last = _ends(parser, list(inner))
        return last if low >= 1 else _union([last, _ends(parser, items[:-1])])
    return None  # ANY would make every token a candidate; lookarounds, anchors: unknown


def _class_test(constants, members: list) -> CharTest | None:
    """The test of a character class `[...]` (negated classes and categories other than
    digits, spaces and word characters: None)."""
    tests = []
    for op, argument in members:
        if op is constants.LITERAL:
            tests.append(lambda ch, c=chr(argument): ch == c)
        elif op is constants.RANGE:
            tests.append(lambda ch, low=chr(argument[0]), high=chr(argument[1]): low <= ch <= high)
        elif op is constants.CATEGORY and argument is constants.CATEGORY_SPACE:
            tests.append(str.isspace)
        elif op is constants.CATEGORY and argument is constants.CATEGORY_DIGIT:
            tests.append(str.isdigit)
        elif op is constants.CATEGORY and argument is constants.CATEGORY_WORD:
            tests.append(lambda ch: ch.isalnum() or ch == "_")
        else:
            return None
    return _union(tests)


def _union(tests: Sequence[CharTest | None]) -> CharTest | None:
    """True where any of `tests` is; None if any of them is unknown."""
    if not tests or any(test is None for test in tests):
        return None
    return lambda ch: any(test(ch) for test in tests)


def candidate_token_ids(tokenizer, delimiter: str | None) -> list[int] | None:
    """Ids of the tokens that may complete a match of `delimiter`: those whose text holds a
    character a match can end with, or half a UTF-8 character (the rest of which may be one).
    None when :func:`match_end_test` cannot tell."""
    test = match_end_test(delimiter)
    if test is None:
        return None
    texts = tokenizer.batch_decode([[token] for token in range(len(tokenizer))], skip_special_tokens=True)
    return [token for token, text in enumerate(texts) if UNFINISHED_CHARACTER in text or any(map(test, text))]
