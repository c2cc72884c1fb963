"""The launcher variables of torch.distributed, checked before a process group is created.

torchrun and the DeepSpeed launcher set RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT for every process they start; a Ray worker of ours has its group created before
its engine is built. Left over in a shell (`export WORLD_SIZE=2` from another job) they used
to make a single-process run wait for peers that never come (up to the collective timeout,
30 minutes by default) or die with "invalid literal for int()" from inside DeepSpeed.
:func:`check_launcher_env` fails at once instead, naming the variable and what to do.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Mapping

from rlhf.config.errors import ConfigError

LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

LAUNCHER_MARKERS = {
    "TORCHELASTIC_RUN_ID": "torchrun",
    "CROSS_SIZE": "the deepspeed launcher",
    "OMPI_COMM_WORLD_SIZE": "mpirun (Open MPI)",
    "PMI_SIZE": "an MPI launcher (PMI)",
}
"""Variables a launcher sets besides the five above: their presence says a launcher started
this process, so a WORLD_SIZE above 1 has peers to wait for."""

_UNSET = "unset it (with the other launcher variables " + ", ".join(LAUNCHER_VARIABLES) + " left from another job)"

_MEANING = {
    "RANK": "a rank (an integer >= 0)",
    "LOCAL_RANK": "a rank on this node (an integer >= 0)",
    "WORLD_SIZE": "a number of processes (an integer >= 1)",
    "MASTER_PORT": "a TCP port (an integer 1 to 65535)",
}


def started_by_launcher(env: Mapping[str, str]) -> bool:
    """True when a launcher started this process (one of `LAUNCHER_MARKERS` is set) or a
    parent Python process did with multiprocessing (which sets up the world for its children,
    as `torch.multiprocessing.spawn` users do)."""
    return any(name in env for name in LAUNCHER_MARKERS) or multiprocessing.parent_process() is not None


def check_launcher_env(env: Mapping[str, str] | None = None, *, launched: bool | None = None) -> None:
    """A ConfigError naming the first launcher variable in `env` (default: os.environ) that is
    malformed or out of range, or a WORLD_SIZE above 1 in a process no launcher started
    (`launched`, default :func:`started_by_launcher`). Unset variables are fine: a lone
    process becomes rank 0 of a world of 1 on a free port."""
    env = os.environ if env is None else env
    world_size = _integer(env, "WORLD_SIZE", 1, None) or 1
    rank = _integer(env, "RANK", 0, None)
    if rank is not None and rank >= world_size:
        raise ConfigError(
            f"environment variable RANK={rank} is out of range for WORLD_SIZE={world_size} (ranks are 0 to {world_size - 1}); "
            f"{_UNSET}, or launch the processes with torchrun"
        )
    _integer(env, "LOCAL_RANK", 0, None)
    _integer(env, "MASTER_PORT", 1, 65535)
    _check_address(env)
    if world_size > 1 and not (started_by_launcher(env) if launched is None else launched):
        raise ConfigError(
            f"environment variable WORLD_SIZE={world_size} is set, but no launcher started this process, so no other rank "
            f"will ever join and the run would wait for them until the collective timeout: {_UNSET}. Several training "
            f"processes come from distributed.backend=ray (resources.pools.<pool>.devices_per_node), or from a launcher "
            f"such as torchrun when you drive the engine yourself"
        )


def _integer(env: Mapping[str, str], name: str, low: int, high: int | None) -> int | None:
    """The integer value of `name` in [low, high] (`_MEANING` says the same in words), None
    when unset; a ConfigError otherwise."""
    if name not in env:
        return None
    text = env[name].strip()
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < low or (high is not None and value > high):
        raise ConfigError(
            f"environment variable {name}={env[name]!r} is not {_MEANING[name]}; {_UNSET}: a process without them "
            f"is rank 0 of a world of one on a free port; or give it a valid value"
        )
    return value


def _check_address(env: Mapping[str, str]) -> None:
    """MASTER_ADDR must be a host name or address this machine can resolve."""
    if "MASTER_ADDR" not in env:
        return
    address = env["MASTER_ADDR"].strip()
    try:
        if not address or any(c.isspace() for c in address):
            raise ValueError
        socket.getaddrinfo(address, None)
    except (OSError, ValueError, UnicodeError):
        raise ConfigError(
            f"environment variable MASTER_ADDR={env['MASTER_ADDR']!r} is not a host name or address this machine can resolve; "
            f"{_UNSET}, or set the address of rank 0"
        ) from None
