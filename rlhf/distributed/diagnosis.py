"""Which ranks of a late call stopped answering, and which merely wait for them.

When one rank of a group hangs (stopped, deadlocked, lost in a C call), the other ranks often
wait for it inside a collective, so every rank is late and "ranks 0-7 did not finish" says
nothing. At the deadline the controller looks at each late rank's process from its own node
(a CPU-less Ray task pinned there reads `/proc`): a process that is gone or stopped did not
answer; one that used CPU in the last half second is busy; one that did not is waiting (in a
collective or on I/O). The message names the ranks that did not answer first.
"""

from __future__ import annotations

import time
from collections import defaultdict

PROBE_TIMEOUT_S = 10.0
"""Longest wait for the probe tasks (a node that cannot run them leaves the ranks undiagnosed)."""

GONE, STOPPED, BUSY, WAITING = "gone", "stopped", "busy", "waiting"


def process_states(pids: list[int], interval_s: float = 0.5) -> dict[int, str]:
    """The state of each process of this machine: gone, stopped, busy (it used CPU during
    `interval_s`) or waiting."""
    before = {pid: _stat(pid) for pid in pids}
    time.sleep(interval_s)
    states = {}
    for pid in pids:
        after = _stat(pid)
        if after is None or after[0] in "ZX":
            states[pid] = GONE
        elif after[0] in "Tt":
            states[pid] = STOPPED
        elif before[pid] is not None and after[1] > before[pid][1]:
            states[pid] = BUSY
        else:
            states[pid] = WAITING
    return states


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, user + system CPU ticks) of process `pid`, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "
    return fields[0], int(fields[11]) + int(fields[12])


def probe_ranks(group, ranks: list[int]) -> dict[int, str]:
    """The state of each rank's process, read on its own node; ranks whose node could not be
    probed are left out."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(process_states)
    by_node: dict[str, list[int]] = defaultdict(list)
    for rank in ranks:
        if rank < len(group.pids) and rank < len(group.node_ids):
            by_node[group.node_ids[rank]].append(rank)
    futures = {
        node: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote([group.pids[r] for r in node_ranks])
        for node, node_ranks in by_node.items()
    }
    states: dict[int, str] = {}
    ready, _ = ray.wait(list(futures.values()), num_returns=len(futures), timeout=PROBE_TIMEOUT_S)
    for node, future in futures.items():
        if future in ready:
            by_pid = ray.get(future)
            states.update({rank: by_pid[group.pids[rank]] for rank in by_node[node]})
        else:
            ray.cancel(future, force=True)
    return states


def describe_late_ranks(group, late: list[int], method: str) -> str:
    """One sentence on the ranks of `group` that did not finish `method` in time."""
    try:
        states = probe_ranks(group, late)
    except Exception:  # the diagnosis must never hide the timeout itself
        states = {}
    silent = [rank for rank in late if states.get(rank) in (GONE, STOPPED)]
    if not states or not silent:
        detail = "; ".join(f"rank {rank} {states[rank]}" for rank in late if rank in states)
        return f"{_ranks(late)} did not finish {method}()" + (f" ({detail})" if detail else "")
    silent_detail = ", ".join(f"rank {rank}: process {group.pids[rank]} {states[rank]}" for rank in silent)
    parts = [f"{_ranks(silent)} did not answer ({silent_detail})"]
    others = [rank for rank in late if rank not in silent]
    if others:
        # Whether a waiting rank shows as busy or idle depends on the collective backend
        # (gloo and NCCL may spin), so the state is given as a detail, not as the verdict.
        seen = ", ".join(f"rank {rank} {states.get(rank, 'unknown')}" for rank in others)
        parts.append(f"{_ranks(others)} still in {method}(), most likely waiting for the silent rank(s) in a collective ({seen})")
    return "; ".join(parts)


def _ranks(ranks: list[int]) -> str:
    return f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"
