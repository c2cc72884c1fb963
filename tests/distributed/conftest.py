"""A local Ray cluster for the distributed tests (3 logical CPUs on this 2-core machine: up to
three 1-CPU workers, e.g. an actor pool of one beside a rollout pool of two), shared by the
whole session; skipped cleanly where Ray is not installed."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def write_recipe(directory: Path, text: str) -> Path:
    path = directory / "recipe.yaml"
    path.write_text(text)
    return path


TINY_RL = """
description: the quickstart task, small, with a length reward so a random-ish policy gets a signal
model: {{source: tiny}}
data:
  train: {{path: "builtin:arithmetic", split: train}}
  eval: {{path: "builtin:arithmetic", split: test, size: 8}}
  train_batch_size: 4
  max_prompt_tokens: 8
rollout: {{n: 4, max_new_tokens: 5, logprobs: true}}
actor: {{lr: 1.0e-4, mini_batch_size: 16, micro_batch_size: 8, ppo_epochs: 2}}
reward:
  sources:
    - {{type: arithmetic}}
    - {{type: length, kwargs: {{target: 0, coef: 0.1}}}}
algorithm: {{advantage: grpo}}
sft: {{enabled: true, max_steps: 60, stop_at_accuracy: 1.0, eval_every: 1000, val_size: 16}}
sync: {{check_every: 1}}
train: {{engine: deepspeed, zero_stage: {zero_stage}}}
distributed: {{backend: {backend}, timeout_s: 300}}
resources: {{pools: {{default: {{devices_per_node: {workers}}}}}}}
trainer: {{total_steps: {steps}, seed: 0}}
"""
"""A recipe template: {zero_stage}, {backend}, {workers}, {steps}."""
