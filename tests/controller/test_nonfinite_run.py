"""The non-finite guard end to end (`rlhf.engines.guards`, `rlhf.controller.guards`): a NaN
policy loss at one step skips that update and the run goes on; NaN losses step after step stop
the run with exit 1, a message naming the step, the batch saved, and earlier checkpoints intact.

The NaN is injected into the policy loss of chosen RL steps (a stand-in for a diverging model,
which cannot be provoked on demand)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import rlhf.workers.actor as actor_module  # noqa: E402
from rlhf.cli.main import main  # noqa: E402
from rlhf.logging.jsonl import read_jsonl  # noqa: E402

RUN = ["sft.enabled=false", "trainer.total_steps=4", "trainer.save_every=1", "trainer.keep_last=10", "trainer.eval_every=0",
       "data.eval.size=4", "data.train_batch_size=4", "rollout.n=2", "actor.mini_batch_size=8", "actor.micro_batch_size=4",
       "actor.lr=1e-3", "actor.entropy_coef=0.01"]  # the entropy bonus moves the weights at every step


def nan_loss_at(monkeypatch, bad_steps: set[int]) -> None:
    """Make the policy loss NaN during the updates of RL steps in `bad_steps` (counted by calls
    to `update_policy`, one per step)."""
    real_update, calls = actor_module.ActorWorker.update_policy, {"step": 0}

    def update_policy(self, batch, kl_coef=None):
        calls["step"] += 1
        if calls["step"] not in bad_steps:
            return real_update(self, batch, kl_coef)
        real_loss = self.policy_loss
        self.policy_loss = lambda *args, **kwargs: (lambda loss, stats: (loss * float("nan"), stats))(*real_loss(*args, **kwargs))
        try:
            return real_update(self, batch, kl_coef)
        finally:
            self.policy_loss = real_loss

    monkeypatch.setattr(actor_module.ActorWorker, "update_policy", update_policy)


def actor_weights(run_dir, step: int) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / f"step_{step:06d}" / "actor" / "engine.pt", weights_only=True)["module"]


def test_one_nan_step_is_skipped_and_the_run_goes_on(tmp_path, monkeypatch):
    out = tmp_path / "run"
    nan_loss_at(monkeypatch, {2})
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *RUN]) == 0
    records = {r["step"]: r for r in read_jsonl(out / "metrics.jsonl")}
    assert [records[s]["actor/skipped_updates"] for s in (1, 2, 3, 4)] == [0, 1, 0, 0]
    # the skipped step left the weights exactly as they were; the steps around it moved them
    after_1, after_2, after_3 = (actor_weights(out, s) for s in (1, 2, 3))
    assert all(torch.equal(after_2[name], after_1[name]) for name in after_1)
    assert any(not torch.equal(after_3[name], after_2[name]) for name in after_2)
    assert all(torch.isfinite(t).all() for t in actor_weights(out, 4).values())


def test_nan_steps_in_a_row_stop_the_run_with_the_batch_saved(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    nan_loss_at(monkeypatch, {2, 3, 4})
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *RUN, "trainer.max_nonfinite_steps=2"]) == 1
    err = capsys.readouterr().err
    assert "step 3: 2 RL steps in a row skipped optimiser updates" in err and "Traceback" not in err
    saved = out / "debug" / "nonfinite_step_000003.pt"
    assert str(saved) in err
    batch = torch.load(saved, weights_only=True)
    assert batch["tensors"]["response_ids"].shape[0] == 8 and "ground_truth" in batch["fields"]
    # the checkpoints before the stop are intact and hold finite weights; step 3 wrote none
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_000001", "step_000002"]
    assert all(torch.isfinite(t).all() for t in actor_weights(out, 2).values())
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2, 3]


def test_the_limit_is_validated(capsys):
    assert main(["train", "quickstart", "trainer.max_nonfinite_steps=-1"]) == 2
    assert "trainer.max_nonfinite_steps: must be >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("limit", [0])
def test_zero_never_stops(tmp_path, monkeypatch, limit):
    out = tmp_path / "run"
    nan_loss_at(monkeypatch, {1, 2, 3, 4})
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *RUN, f"trainer.max_nonfinite_steps={limit}"]) == 0
    assert all(r.get("actor/skipped_updates", 1) == 1 for r in read_jsonl(out / "metrics.jsonl")[1:])
