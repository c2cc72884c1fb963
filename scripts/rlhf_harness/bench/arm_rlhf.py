"""The rlhf arm: the path `rlhf train` takes (recipe -> `build_run` -> `build_roles`), then the
loop's own step function, :func:`rlhf.controller.step.rl_step`, once per step.

The recipe is `recipes/quickstart.yaml` with the benchmark's numbers as overrides: the policy
is loaded from the shared checkpoint, no SFT, no evaluation, one mini-batch of all B sequences
(a single on-policy update: no separate old-logprob pass) in micro-batches of
`settings.update_micro_batch`, no KL (the quickstart has none). The rollout engine is the
recipe's HF engine, or vLLM for the `vllm` arm (:func:`vllm_arm`).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from rlhf.config.loader import load_recipe
from rlhf.controller.loop import rollout_source
from rlhf.controller.roles import build_roles
from rlhf.controller.setup import build_run
from rlhf.controller.step import rl_step
from rlhf.timing import PhaseTimer

from rlhf_harness.bench.common import StepRecord, greedy_accuracy
from rlhf_harness.bench.memory import MemoryPhaseTimer, PhasePeaks
from rlhf_harness.bench.settings import MAX_PROMPT_TOKENS, BenchSettings

QUICKSTART = Path(__file__).resolve().parents[3] / "recipes" / "quickstart.yaml"


def recipe_overrides(settings: BenchSettings, rollout_engine: str = "hf") -> list[str]:
    """`key=value` overrides that give the quickstart recipe the benchmark's numbers."""
    batch = settings.batch_size
    engine = [f"rollout.engine={rollout_engine}"]
    if rollout_engine == "vllm":  # room for one prompt and its response, not the model's maximum
        engine.append(f"rollout.vllm.max_model_len={MAX_PROMPT_TOKENS + settings.max_new_tokens}")
    return [
        "model.source=pretrained", f"model.path={settings.model_dir}", f"model.dtype={settings.dtype}",
        f"model.param_dtype={settings.param_dtype}", "sft.enabled=false", "data.eval.path=''",
        f"data.train_batch_size={settings.prompts}", f"data.max_prompt_tokens={MAX_PROMPT_TOKENS}",
        f"rollout.n={settings.samples}", f"rollout.max_new_tokens={settings.max_new_tokens}", *engine,
        f"actor.mini_batch_size={batch}", f"actor.micro_batch_size={settings.update_micro_batch}", f"trainer.device={settings.device}",
        # YAML reads 1e-4 as a string: a float needs the dot and the signed exponent
        f"actor.lr={settings.lr:.6e}", f"actor.warmup_steps={settings.warmup_steps}", f"actor.lr_schedule={settings.lr_schedule}",
        f"trainer.total_steps={settings.total_steps}", f"trainer.num_threads={settings.threads}", f"trainer.seed={settings.seed}",
        f"trainer.output_dir={Path(settings.work_dir) / 'rlhf'}",
    ]


class RlhfArm:
    """rlhf's controller, stepped one `rl_step` at a time."""

    def __init__(self, settings: BenchSettings, rollout_engine: str = "hf"):
        config = load_recipe(QUICKSTART, recipe_overrides(settings, rollout_engine))
        self.rl_run = build_run(config, "bench-vs-trl")  # sets the thread count, seeds, loads the model
        self.roles = build_roles(self.rl_run)
        self.source = rollout_source(self.rl_run)  # data.train_batch_size prompts per step, seeded by trainer.seed
        # every phase of rl_step (generate, reward, logprob passes, update, ...) records its peak memory
        self.peaks = PhasePeaks(self.rl_run.device.type)
        self.timer = MemoryPhaseTimer(PhaseTimer(), self.peaks)
        self.roles.sync_weights()  # what the loop does before its first step (no bytes: shared module)
        self.steps_done = 0

    def run(self, steps: int) -> list[dict]:
        """`steps` timed steps, as `StepRecord` dicts."""
        return [asdict(self.step()) for _ in range(steps)]

    def step(self) -> StepRecord:
        self.steps_done += 1
        start = time.perf_counter()
        with self.peaks.phase("step"):
            metrics = rl_step(self.rl_run, self.roles, self.source, self.timer, self.steps_done)
        phases = self.timer.pop()  # the loop pops the timer every step too
        seconds = time.perf_counter() - start
        return StepRecord(
            seconds=seconds, tokens=int(metrics["perf/total_tokens"]), generate_seconds=phases.get("time/generate_s"),
            reward_mean=metrics["reward/mean"], response_length_mean=metrics["response_length/mean"],
            update_seconds=phases.get("time/update_s"), phases=phases,
            peak_memory_mib=self.peaks.pop(),
        )

    def accuracy(self, rows: list[dict], max_new_tokens: int) -> float:
        return greedy_accuracy(self.rl_run.model, self.rl_run.tokenizer, rows, max_new_tokens)

    def close(self) -> None:
        self.peaks.stop()
        self.roles.close()
        self.rl_run.reward.close()


def vllm_arm(settings: BenchSettings) -> RlhfArm:
    """The `vllm` arm: the rlhf arm with `rollout.engine=vllm` (our vLLM engine)."""
    return RlhfArm(settings, rollout_engine="vllm")
