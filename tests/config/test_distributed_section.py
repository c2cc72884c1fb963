"""The distributed and resources sections: defaults, pools, and what must split over ranks."""

import pytest

from rlhf.config.errors import ConfigError
from rlhf.config.loader import load_recipe
from rlhf.controller.preflight import load_checked_recipe
from rlhf.config.validate_distributed import pool_size

RAY2 = ["model.path=org/some-model", "distributed.backend=ray", "resources.pools.default.devices_per_node=2", "train.engine=deepspeed"]


def test_defaults_are_one_local_process():
    config = load_checked_recipe(None, ["model.path=org/some-model"])
    assert config.distributed.backend == "local" and config.resources.actor == "default"
    assert config.resources.pool_of("ref") == config.resources.pool_of("critic") == config.resources.pool_of("rollout") == "default"
    assert pool_size(config, "default") == 1


def test_a_named_pool_sizes_the_group_and_hosts_the_roles_that_name_it():
    config = load_checked_recipe(None, [*RAY2, "resources.pools.big={nodes: 2, devices_per_node: 4}", "resources.actor=big", "resources.critic=default"])
    assert pool_size(config, "big") == 8
    assert config.resources.pool_of("ref") == "big" and config.resources.pool_of("critic") == "default"


@pytest.mark.parametrize("overrides, message", [
    (["resources.actor=gpus"], "resources.actor: no pool named 'gpus' in resources.pools (have: default)"),
    (["resources.pools.default.nodes=0"], "resources.pools.default.nodes: must be >= 1 (got 0)"),
    (["actor.mini_batch_size=7", "actor.micro_batch_size=7", "data.train_batch_size=7", "rollout.n=1"], "actor.mini_batch_size (7) must split evenly over the actor's 2 workers"),
    (["train.engine=torch"], "train.engine: 'torch' trains in one process, but resources.pools.default has 2 workers"),
    (["rollout.engine=vllm", "rollout.vllm.tensor_parallel_size=3"], "rollout.vllm.tensor_parallel_size (3) must divide the rollout's 2 workers"),
    (["rollout.engine=vllm", "rollout.vllm.tensor_parallel_size=0"], "rollout.vllm.tensor_parallel_size: must be >= 1"),
    (["resources.pools.refs={devices_per_node: 1}", "resources.ref=refs", "ref.anchor.every=5", "algorithm.kl.coef=0.01"], "ref.anchor: the dynamic anchor copies the actor's weights"),
    (["distributed.timeout_s=0"], "distributed.timeout_s: must be > 0"),
    (["sync.bucket_mb=0"], "sync.bucket_mb: must be >= 1"),
])
def test_inconsistent_layouts_are_refused(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_checked_recipe(None, [*RAY2, *overrides])
    assert message in str(error.value)


def test_tensor_parallel_vllm_needs_ray_and_validates_with_it():
    with pytest.raises(ConfigError, match="tensor_parallel_size: 2 needs distributed.backend=ray"):
        load_checked_recipe(None, ["model.path=org/some-model", "rollout.engine=vllm", "rollout.vllm.tensor_parallel_size=2"])
    load_checked_recipe(None, [*RAY2, "rollout.engine=vllm", "rollout.vllm.tensor_parallel_size=2"])


def test_the_local_backend_ignores_the_pools():
    # two devices in a pool mean nothing to one process: no divisibility demands
    load_checked_recipe(None, ["model.path=org/some-model", "resources.pools.default.devices_per_node=2", "actor.mini_batch_size=7", "actor.micro_batch_size=7", "data.train_batch_size=7", "rollout.n=1"])
