"""How a failure of user code (a reward function, an environment class) is told: the
exception and the user's own line it came from, its traceback trimmed to the user's frames,
and values shown short. The worker processes that host user code import this module, so it
imports nothing but the standard library.
"""

from __future__ import annotations

import math
import sysconfig
import traceback
from typing import Any, Callable

OursFilter = Callable[[str], bool]
"""filename -> True for a frame of rlhf's own calling code, which the user need not see."""


def cause(error: BaseException) -> str:
    """'ValueError: bad row', or just 'StopIteration' for an exception without a message."""
    try:
        text = str(error)
    except Exception:  # a user exception whose __str__ fails
        text = "<its message cannot be shown>"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def kind(value: Any) -> str:
    """'int of 401 digits' for an int, else the type's name."""
    if isinstance(value, int):
        return f"int of {len(str(abs(value)))} digits" if value.bit_length() < 10_000 else f"int of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return type(value).__name__


def short(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters (and never failing)."""
    try:
        text = repr(value)
    except Exception:  # a huge int (Python refuses to print > 4300 digits) or a broken __repr__
        text = f"<{kind(value)}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plain_scalar(value: Any) -> Any:
    """A numpy scalar or a 0-d tensor as the Python number it holds; anything else unchanged."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()
    return value


def user_frames(error: BaseException, ours: OursFilter) -> tuple[list[traceback.FrameSummary], int]:
    """(the exception's frames below rlhf's calling code, the index of the last one outside the
    standard library and installed packages: the user's line)."""
    frames = traceback.extract_tb(error.__traceback__)
    while frames and ours(frames[0].filename):
        frames.pop(0)
    library = tuple({sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")})
    last_user = max((i for i, frame in enumerate(frames) if not frame.filename.startswith(library)), default=len(frames) - 1)
    return frames, last_user


def explain(error: BaseException, ours: OursFilter) -> tuple[str, str]:
    """('ValueError: boom (at line 12 of /x/env.py, in step)', the traceback trimmed to the
    user's frames, library frames below the user's last line left out)."""
    frames, last_user = user_frames(error, ours)
    line = ""
    if frames:
        frame = frames[last_user]
        line = f" (at line {frame.lineno} of {frame.filename}, in {frame.name})"
    details = ["Traceback (most recent call last):\n", *traceback.format_list(frames[: last_user + 1])]
    if len(frames) - 1 > last_user:
        details.append(f"  ... {len(frames) - 1 - last_user} frame(s) inside libraries\n")
    details.extend(traceback.format_exception_only(type(error), error))
    return cause(error) + line, "".join(details).rstrip()
