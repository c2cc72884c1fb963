"""perf/throughput (veRL's definition) and the share of step time per phase, with hand-made
numbers."""

import pytest
import torch

from rlhf.config.distributed_schema import PoolConfig
from rlhf.config.schema import RecipeConfig
from rlhf.controller.perf import device_count, throughput
from rlhf.controller.samples import sample_generations, spread_over_groups
from rlhf.controller.step import batch_metrics
from rlhf.timing import phase_shares
from rlhf.data.batch import Batch


def test_phase_shares_divide_each_phase_by_the_step():
    shares = phase_shares({"generate": 1.0, "update": 2.5, "reward": 0.5}, step_seconds=5.0)
    assert shares == {"time/generate_share": 0.2, "time/update_share": 0.5, "time/reward_share": 0.1}
    assert phase_shares({"generate": 1.0}, step_seconds=0.0) == {}


def ray_config(pools: dict, **roles) -> RecipeConfig:
    config = RecipeConfig()
    config.distributed.backend = "ray"
    config.resources.pools = {name: PoolConfig(nodes=nodes, devices_per_node=per_node) for name, (nodes, per_node) in pools.items()}
    for role, pool in roles.items():
        setattr(config.resources, role, pool)
    return config


def test_devices_are_every_worker_of_the_pools_that_host_a_role():
    assert device_count(RecipeConfig()) == 1  # the local backend
    assert device_count(ray_config({"default": (2, 4)})) == 8  # colocated: the actor's pool
    assert device_count(ray_config({"train": (1, 4), "gen": (1, 2)}, actor="train", rollout="gen")) == 6
    # a pool no role uses (the critic is not hosted without a critic-based estimator) is not counted
    assert device_count(ray_config({"train": (1, 4), "spare": (1, 8)}, actor="train", critic="spare")) == 4


def test_throughput_is_tokens_over_seconds_over_devices():
    assert throughput(total_tokens=12_000, step_seconds=2.0, devices=4) == 1500.0


def test_batch_metrics_count_prompt_and_response_tokens():
    batch = Batch({"prompt_mask": torch.tensor([[0, 1, 1], [1, 1, 1]]), "response_mask": torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])})
    metrics = batch_metrics(batch, torch.tensor([1.0, 0.0]), step_seconds=0.5, devices=2)
    assert metrics["perf/total_tokens"] == 11
    assert metrics["perf/tokens_per_s"] == 22.0 and metrics["perf/throughput"] == 11.0


def test_samples_take_each_prompts_first_response_first():
    assert spread_over_groups([7, 7, 7, 9, 9, 9], limit=4) == [0, 3, 1, 4]
    assert spread_over_groups([3, 3], limit=5) == [0, 1]
    batch = Batch(
        {"scores": torch.tensor([1.0, 0.5, 0.0, 1.0]), "source_scores/exact": torch.tensor([1.0, 1.0, 0.0, 1.0]), "source_scores/length": torch.tensor([0.0, -0.5, 0.0, 0.0])},
        {"group_index": [0, 0, 1, 1], "prompt_text": ["a", "a", "b", "b"], "response_text": ["r0", "r1", "r2", "r3"], "ground_truth": ["x", "x", "y", "y"]},
    )
    first, second = sample_generations(batch, limit=2)
    assert first == {"prompt": "a", "response": "r0", "reward": 1.0, "rewards": {"exact": 1.0, "length": 0.0}, "ground_truth": "x"}
    assert second["prompt"] == "b" and second["rewards"] == {"exact": 0.0, "length": 0.0}
    assert pytest.approx(sample_generations(batch, limit=4)[2]["rewards"]["length"]) == -0.5
