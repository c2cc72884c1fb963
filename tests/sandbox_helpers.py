"""What the python tool's sandbox tests share: a fork bomb, and the sandbox processes still alive."""

from __future__ import annotations

import os

from rlhf.envs.tools.sandbox import BOOTSTRAP


def sandbox_processes() -> list[int]:
    """Live processes started from this checkout's bootstrap (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if BOOTSTRAP.encode() in cmdline.read():
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


FORK_BOMB = (
    "import os, time\nforked = 0\n"
    "for _ in range(200):\n"
    "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
    "    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n    forked += 1\n"
    "print('forked', forked, flush=True)\n"
    "while True:\n    try: os.fork()\n    except OSError: pass\n"
)
"""Forks up to 200 sleeping children, prints how many it got, then forks forever: under a cap
of N processes it prints a number below N and is killed at the wall-clock timeout."""
