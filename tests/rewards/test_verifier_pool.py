"""`VerifierPool`: ordered results, per-sample timeouts, crashes, clean shutdown."""

import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import verifier_helpers
from verifier_helpers import exact, misbehaving, pid, slow_warmup

from rlhf.rewards.verifier_pool import VerifierPool
from rlhf.rewards.verifiers import math_score, warm_up_math_verify


@pytest.fixture(scope="module")
def pool():
    """Two workers shared by the tests below (they also check that workers are reused)."""
    with VerifierPool(num_workers=2, timeout_s=1.0) as shared:
        yield shared


def test_results_come_back_in_order(pool):
    responses = [str(i % 7) for i in range(50)]
    ground_truths = [str(i % 5) for i in range(50)]
    scores, timeouts = pool.score_all(exact, responses, ground_truths)
    assert scores == [float(r == g) for r, g in zip(responses, ground_truths)]
    assert timeouts == 0 and pool.last_errors == 0


def test_workers_are_reused_across_batches(pool):
    first, _ = pool.score_all(pid, ["a"] * 6, ["a"] * 6)
    second, _ = pool.score_all(pid, ["a"] * 6, ["a"] * 6)
    assert set(second) <= set(first) and len(set(first)) <= 2
    assert os.getpid() not in first


def test_a_hung_sample_times_out_and_the_worker_is_replaced(pool):
    start = time.monotonic()
    scores, timeouts = pool.score_all(misbehaving, ["a", "sleep", "b", "a", "c"], ["a", "a", "b", "x", "c"])
    elapsed = time.monotonic() - start
    assert scores == [1.0, 0.0, 1.0, 0.0, 1.0]
    assert timeouts == 1 and pool.last_errors == 0
    assert 0.9 < elapsed < 5.0
    scores, timeouts = pool.score_all(exact, ["a", "b", "c", "d"], ["a", "b", "c", "x"])  # the respawned worker works
    assert scores == [1.0, 1.0, 1.0, 0.0] and timeouts == 0


def test_crashes_and_exceptions_score_zero_and_are_counted(pool):
    scores, timeouts = pool.score_all(misbehaving, ["crash", "a", "raise", "crash", "b"], ["a", "a", "a", "a", "b"])
    assert scores == [0.0, 1.0, 0.0, 0.0, 1.0]
    assert timeouts == 0 and pool.last_errors == 3
    assert pool.score_all(exact, ["a", "b"], ["a", "b"]) == ([1.0, 1.0], 0)


def test_every_sample_hanging_still_returns():
    with VerifierPool(num_workers=2, timeout_s=0.3) as pool:
        scores, timeouts = pool.score_all(misbehaving, ["sleep"] * 4 + ["a"], ["a"] * 5)
    assert scores == [0.0] * 4 + [1.0] and timeouts == 4


def test_close_leaves_no_child_processes():
    others = set(multiprocessing.active_children())  # the shared pool's workers
    pool = VerifierPool(num_workers=2, timeout_s=1.0, warmup=slow_warmup)
    pool.start()
    assert len(set(multiprocessing.active_children()) - others) == 2
    pool.close()  # while the workers are still warming up
    pool.close()  # idempotent
    assert set(multiprocessing.active_children()) == others
    with pytest.raises(RuntimeError, match="closed"):
        pool.score_all(exact, ["a"], ["a"])


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="reads /proc")
def test_pools_left_open_are_cleaned_up_at_exit():
    helpers_dir = Path(verifier_helpers.__file__).parent
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(helpers_dir)!r})
        from verifier_helpers import pid
        from rlhf.rewards.verifier_pool import VerifierPool

        if __name__ == "__main__":
            pool = VerifierPool(num_workers=2, timeout_s=5.0)
            scores, _ = pool.score_all(pid, ["a"] * 4, ["a"] * 4)
            print(" ".join(str(int(s)) for s in set(scores)))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    worker_pids = [int(p) for p in done.stdout.split()]
    assert worker_pids
    time.sleep(0.2)
    for worker_pid in worker_pids:
        assert not Path(f"/proc/{worker_pid}").exists() or _is_zombie(worker_pid)


def _is_zombie(process_id: int) -> bool:
    try:
        return Path(f"/proc/{process_id}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_in_process_mode_runs_in_the_caller():
    others = set(multiprocessing.active_children())
    pool = VerifierPool(num_workers=0, timeout_s=1.0)
    scores, timeouts = pool.score_all(pid, ["a", "b"], ["a", "b"])
    assert scores == [float(os.getpid())] * 2 and timeouts == 0
    assert pool.score_all(misbehaving, ["raise", "a"], ["a", "a"]) == ([0.0, 1.0], 0)
    assert pool.last_errors == 1
    assert set(multiprocessing.active_children()) == others


def test_functions_must_be_importable(pool):
    with pytest.raises(TypeError, match="top-level"):
        pool.score_all(lambda r, g: 1.0, ["a"], ["a"])
    with pytest.raises(ValueError, match="ground truths"):
        pool.score_all(exact, ["a", "b"], ["a"])


def test_a_pathological_math_answer_does_not_hang():
    """A power tower sympy cannot evaluate: math-verify's own alarm would give up after a few
    seconds; the pool's timeout cuts it at 1 s, and the next samples are graded as usual."""
    with VerifierPool(num_workers=1, timeout_s=1.0, warmup=warm_up_math_verify) as pool:
        pool.start()
        responses = [r"\boxed{\frac12}", r"\boxed{9^{9^{9^{9}}}}", r"\boxed{2\sqrt{2}}"]
        start = time.monotonic()
        scores, timeouts = pool.score_all(math_score, responses, ["0.5", "2", r"\sqrt{8}"])
    assert scores == [1.0, 0.0, 1.0]
    assert timeouts == 1
    assert time.monotonic() - start < 10.0
