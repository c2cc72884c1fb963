"""What a process and its descendants hold, read from Linux's /proc: resident memory, its peak,
open file descriptors, and which processes still live.

Plain file reads, no psutil (not a dependency). A process can exit between listing /proc and
reading its files: every reader returns None (or skips it) then, never raises.

A process is identified by `ProcessId` = (pid, start time in clock ticks since boot): a pid
reused after its process died has a new start time, so "is it still alive?" never confuses the
two.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
MIB = 2**20
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcessId:
    """One process, robust against pid reuse."""

    pid: int
    start_ticks: int
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""


@dataclass(frozen=True)
class ProcessStat:
    """The fields of /proc/PID/stat this module reads."""

    pid: int
    name: str
    state: str
    """R running, S sleeping, Z zombie (exited, not yet reaped), ..."""
    ppid: int
    pgrp: int
    session: int
    start_ticks: int

    @property
    def id(self) -> ProcessId:
        return ProcessId(self.pid, self.start_ticks)


def read_stat(pid: int | str) -> ProcessStat | None:
    """/proc/PID/stat parsed, or None when the process is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the name sits in parentheses and may itself hold spaces and ')'
    head, _, tail = text.rpartition(")")
    fields = tail.split()
    name = head.partition("(")[2]
    return ProcessStat(int(pid), name, fields[0], int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]))


def all_stats() -> list[ProcessStat]:
    """Every process this namespace shows."""
    stats = (read_stat(entry) for entry in os.listdir(PROC) if entry.isdigit())
    return [stat for stat in stats if stat is not None]


def descendants(pid: int, stats: list[ProcessStat] | None = None) -> list[ProcessStat]:
    """Children, grandchildren, ... of `pid` (not `pid` itself), zombies excluded."""
    by_parent: dict[int, list[ProcessStat]] = {}
    for stat in stats if stats is not None else all_stats():
        by_parent.setdefault(stat.ppid, []).append(stat)
    found, frontier = [], [pid]
    while frontier:
        children = by_parent.get(frontier.pop(), [])
        found.extend(child for child in children if child.state != "Z")
        frontier.extend(child.pid for child in children)
    return found


def session_members(session: int, stats: list[ProcessStat] | None = None) -> list[ProcessStat]:
    """Live (non-zombie) processes of session `session`: what a process started with
    `start_new_session=True` (session id = its pid) and everything it started share, unless
    one of them called setsid itself."""
    return [stat for stat in (stats if stats is not None else all_stats()) if stat.session == session and stat.state != "Z"]


def still_alive(ids: set[ProcessId] | list[ProcessId]) -> list[ProcessStat]:
    """Those of `ids` that still run (same pid, same start time, not a zombie)."""
    alive = []
    for process in ids:
        stat = read_stat(process.pid)
        if stat is not None and stat.start_ticks == process.start_ticks and stat.state != "Z":
            alive.append(stat)
    return alive


def memory_status(pid: int | str = "self") -> dict[str, int] | None:
    """{"rss": VmRSS, "hwm": VmHWM} in bytes (HWM: the peak RSS since the process started), or
    None when the process is gone (or is a kernel thread without memory)."""
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return None
    values = {}
    for line in lines:
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key[2:].lower()] = int(rest.split()[0]) * 1024  # reported in kB
    return values if len(values) == 2 else None


def rss_bytes(pid: int | str = "self") -> int | None:
    """Resident set size now, from /proc/PID/statm (cheaper than status: one short line)."""
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * PAGE_BYTES
    except (OSError, IndexError):
        return None


def fd_count(pid: int | str = "self") -> int | None:
    """Open file descriptors of a process (sockets, pipes and files alike)."""
    try:
        return len(os.listdir(PROC / str(pid) / "fd"))
    except OSError:
        return None


def open_files(pid: int | str = "self") -> list[str]:
    """What each open descriptor points to ('socket:[123]', a path, 'pipe:[45]'), sorted: the
    diagnosis when `fd_count` grows."""
    directory = PROC / str(pid) / "fd"
    targets = []
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    for entry in entries:
        try:
            targets.append(os.readlink(directory / entry))
        except OSError:
            continue
    return sorted(targets)


def command_line(pid: int) -> str:
    """The process's command line ('' once it is gone)."""
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def describe(stat: ProcessStat) -> str:
    """One line for a report: pid, name and command line."""
    return f"{stat.pid} ({stat.name}) {command_line(stat.pid)[:160]}"
