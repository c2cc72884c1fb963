"""The torch.distributed group of one worker group, with a rendezvous the group sets up itself.

Rank 0 picks a free TCP port on its node; every rank then joins ``tcp://<rank-0 ip>:<port>``.
The group uses nccl when the workers see a GPU and gloo otherwise, and its timeout turns a
collective that never completes (a peer died or hangs) into an error instead of a hang.
"""

from __future__ import annotations

import datetime
import os
import socket

import torch


COLLECTIVE_TIMEOUT_MARGIN_S = 30.0
"""A worker group's collectives time out this much after the controller's deadline
(`distributed.timeout_s`), so the controller diagnoses a hang before the ranks waiting for a
silent peer raise errors of their own."""


def free_port() -> int:
    """A TCP port that is free on this machine right now."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def node_ip() -> str:
    """This node's IP address as Ray sees it (reachable from the other nodes)."""
    import ray

    return ray.util.get_node_ip_address()


def join_process_group(rank: int, world_size: int, master_addr: str, master_port: int, timeout_s: float) -> str:
    """Initialise the default process group of this worker; returns the backend name.

    The launcher variables are set too, since DeepSpeed reads them."""
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK="0", MASTER_ADDR=master_addr, MASTER_PORT=str(master_port))
    if torch.cuda.is_available():
        torch.cuda.set_device(0)  # Ray gives each worker its own GPU as device 0
    torch.distributed.init_process_group(
        backend, init_method=f"tcp://{master_addr}:{master_port}", rank=rank, world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    return backend
