"""Top-level verifier functions for the pool tests: worker processes import them by name, so
they live in a module of their own (on sys.path next to the tests, which the workers inherit)."""

import os
import time


def exact(response: str, ground_truth: str) -> float:
    return float(response == ground_truth)


def misbehaving(response: str, ground_truth: str) -> float:
    """Like `exact`, but the response "sleep" hangs, "crash" kills the worker, "raise" raises."""
    if response == "sleep":
        time.sleep(3600)
    if response == "crash":
        os._exit(3)
    if response == "raise":
        raise ValueError("verifier bug")
    return exact(response, ground_truth)


def pid(response: str, ground_truth: str) -> float:
    return float(os.getpid())


def slow_warmup() -> None:
    time.sleep(0.3)
