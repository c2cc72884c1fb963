"""Which processes live, read from Linux's /proc (importable as `process_helpers`, like
`tiny_helpers`): for tests that check that no process outlives the code that started it."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _stat(pid: int | str) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # the name before ')' may hold spaces
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, exited but not reaped, counts as gone)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def descendants(pid: int | None = None) -> set[int]:
    """The living children, grandchildren, ... of `pid` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    by_parent: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        stat = _stat(entry) if entry.isdigit() else None
        if stat is not None and stat[0] != "Z":
            by_parent.setdefault(stat[1], []).append(int(entry))
    found, frontier = set(), [pid]
    while frontier:
        children = by_parent.get(frontier.pop(), [])
        found.update(children)
        frontier.extend(children)
    return found


def wait_gone(pids, timeout_s: float = 5.0) -> set[int]:
    """Wait until none of `pids` lives (at most `timeout_s`); the ones still alive."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = {pid for pid in pids if alive(pid)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def session_members(session: int) -> list[int]:
    """The living (not zombie) processes of session `session` (e.g. a child started with
    `start_new_session=True`, whose pid is its session id)."""
    members = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == session:
            members.append(int(entry))
    return members
