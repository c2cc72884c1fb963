"""The message of a key whose value is not one of a fixed set (shared by every validator)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def choice_error(key: str, value: str, valid: Iterable[str]) -> str | None:
    """'<key>: unknown value ...; valid values: ...' when ``value`` is not one of ``valid``."""
    valid = list(valid)
    if value in valid:
        return None
    close = difflib.get_close_matches(value, valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{key}: unknown value {value!r} ({hint}valid values: {', '.join(valid)})"
