"""The TRL arm: `trl.GRPOTrainer.train()` as a user runs it, paused between optimizer steps.

`train()` runs on a thread of this arm's worker process. A callback ends every optimizer step:
it records the step and, once the requested number of steps is done, blocks until the driver
asks for more, so the trainer is built once and only steps are timed. One thread computes at
any time. A step's time runs from the end of the previous step (or from the resume) to the
end of this one, so it includes the trainer's own per-step work around the step (fetching the
prompts, logging).

GRPOConfig, matched to the other arms:
- one generation of P × n per optimizer step, used once, in the others' micro-batches of m
  sequences: per_device_train_batch_size = m, gradient_accumulation_steps =
  steps_per_generation = B / m (TRL generates B sequences at once, every B / m micro-steps),
  num_iterations = 1 (TRL then skips its old-logprob pass, as rlhf does);
- no KL: beta = 0 (no reference model is loaded);
- sampling with `model.generate` (use_vllm = False): temperature 1, top_p 1, top_k 0,
  max_completion_length = max new tokens;
- AdamW at the same lr, betas (0.9, 0.999), weight decay 0, max_grad_norm 1, same schedule;
  the implementation is TRL's default `adamw_torch_fused`;
- float32 unless the benchmark asks for bfloat16 autocast: bf16 = (dtype == bfloat16)
  (GRPOConfig turns it on by default, also on CPU); no gradient checkpointing (on by default
  in TRL, off in rlhf);
- the device of the others: use_cpu unless it is 'cuda';
- loss: TRL's defaults, loss_type 'dapo' (token mean over the batch, like rlhf's token-mean)
  and scale_rewards 'group' (std-normalised groups, like rlhf's grpo).
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import torch
from datasets import Dataset
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PrinterCallback,
    TrainerCallback,
)
from transformers.utils import logging as hf_logging
from trl import GRPOConfig, GRPOTrainer

from rlhf_harness.bench.common import StepRecord, greedy_accuracy, scores, train_rows
from rlhf_harness.bench.memory import PhasePeaks
from rlhf_harness.bench.settings import BenchSettings


class StepGate(TrainerCallback):
    """Records each optimizer step; after the requested number of steps, waits for more.

    Memory and time: a "step" window runs from the step's start to its end, an "update" window
    from the end of the step's first `_prepare_inputs` (generation, scoring) to the step's end
    (forward, backward of every micro-batch, optimizer step); `TrlArm.time_generate` adds
    "generate"."""

    def __init__(self, peaks: PhasePeaks) -> None:
        self.peaks = peaks
        self.step_window: int | None = None
        self.update_window: int | None = None
        self.update_start = 0.0
        self.resume = threading.Semaphore(0)
        self.paused = threading.Semaphore(0)
        self.remaining = 0
        self.stopping = False
        self.records: list[StepRecord] = []
        self.mark = 0.0
        self.generate_seconds = 0.0
        self.batch_stats: dict[str, float] = {}
        """Tokens, mean reward and response length of the step's batch (set by the reward)."""

    def wait_for_work(self) -> None:
        self.resume.acquire()
        self.start_step()

    def start_step(self) -> None:
        self.mark = time.perf_counter()
        self.generate_seconds = 0.0
        self.peaks.pop()  # drop what ran between steps (an accuracy check's generate)
        self.step_window = self.peaks.open("step")

    def end_windows(self) -> dict[str, float]:
        """Close the step's memory windows; their peaks (MiB)."""
        for window in (self.update_window, self.step_window):
            if window is not None:
                self.peaks.close(window)
        self.update_window = self.step_window = None
        return self.peaks.pop()

    def on_train_begin(self, args, state, control, **kwargs):
        self.wait_for_work()

    def on_step_end(self, args, state, control, **kwargs):
        peaks = self.end_windows()  # first: on CUDA it waits for the step's kernels
        now = time.perf_counter()
        stats = self.batch_stats
        self.records.append(StepRecord(
            seconds=now - self.mark, tokens=int(stats["tokens"]), generate_seconds=self.generate_seconds,
            reward_mean=stats["reward_mean"], response_length_mean=stats["response_length_mean"],
            update_seconds=now - self.update_start, peak_memory_mib=peaks,
        ))
        self.remaining -= 1
        if self.remaining == 0:
            self.paused.release()
            self.wait_for_work()
        else:
            self.start_step()
        if self.stopping:
            control.should_training_stop = True
        return control


def grpo_config(settings: BenchSettings) -> GRPOConfig:
    """TRL's settings equivalent to the other arms' (see the module docstring)."""
    micro_batch = settings.update_micro_batch
    accumulation = settings.batch_size // micro_batch
    if accumulation * micro_batch != settings.batch_size:
        raise ValueError(f"micro_batch_size ({micro_batch}) must divide the batch of {settings.batch_size} sequences")
    schedule = {"lr_scheduler_type": "constant_with_warmup" if settings.warmup_steps else "constant"}
    if settings.lr_schedule == "cosine":  # rlhf's cosine ends at 10% of the peak
        schedule = {"lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": 0.1}}
    return GRPOConfig(
        output_dir=str(Path(settings.work_dir) / "trl"), use_cpu=settings.device == "cpu", seed=settings.seed,
        per_device_train_batch_size=micro_batch, gradient_accumulation_steps=accumulation, steps_per_generation=accumulation,
        num_generations=settings.samples, num_iterations=1, beta=0.0, use_vllm=False,
        max_completion_length=settings.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
        learning_rate=settings.lr, adam_beta1=0.9, adam_beta2=0.999, weight_decay=0.0, max_grad_norm=1.0,
        warmup_steps=settings.warmup_steps, max_steps=settings.total_steps, **schedule,
        bf16=settings.dtype == "bfloat16", gradient_checkpointing=False,
        report_to=[], save_strategy="no", logging_steps=1, disable_tqdm=True, dataloader_num_workers=0,
    )


class TrlArm:
    """GRPOTrainer on a paused thread; `run(k)` lets it take k optimizer steps."""

    def __init__(self, settings: BenchSettings):
        hf_logging.set_verbosity_error()
        torch.set_num_threads(settings.threads)
        self.tokenizer = AutoTokenizer.from_pretrained(settings.model_dir)
        self.prompt_lengths: dict[str, int] = {}
        model = AutoModelForCausalLM.from_pretrained(settings.model_dir, dtype=torch.float32)
        self.peaks = PhasePeaks(settings.device)
        self.gate = StepGate(self.peaks)
        dataset = Dataset.from_list([{"prompt": row["prompt"], "ground_truth": row["ground_truth"]} for row in train_rows()])
        self.trainer = GRPOTrainer(
            model=model, reward_funcs=self.arithmetic_reward, args=grpo_config(settings),
            train_dataset=dataset, processing_class=self.tokenizer, callbacks=[self.gate],
        )
        self.trainer.remove_callback(PrinterCallback)  # no per-step dict on stdout
        self.time_generate(self.trainer.model)
        self.mark_update(self.trainer)
        self.error: str | None = None
        self.thread = threading.Thread(target=self.train, name="trl-train", daemon=True)
        self.thread.start()

    def arithmetic_reward(self, prompts, completions, completion_ids, ground_truth, **kwargs) -> list[float]:
        """TRL's reward signature around the shared reward; also counts the step's tokens
        (prompt + completion, EOS included: TRL's completion ids stop after it)."""
        rewards = scores(completions, ground_truth)
        for prompt in prompts:
            if prompt not in self.prompt_lengths:
                self.prompt_lengths[prompt] = len(self.tokenizer(prompt)["input_ids"])
        lengths = [len(ids) for ids in completion_ids]
        self.gate.batch_stats = {
            "tokens": sum(self.prompt_lengths[p] for p in prompts) + sum(lengths),
            "reward_mean": sum(rewards) / len(rewards), "response_length_mean": sum(lengths) / len(lengths),
        }
        return rewards

    def time_generate(self, model: torch.nn.Module) -> None:
        """Wrap this model object's `generate` to add its wall time to the gate (TRL's own
        generation timer reports only to wandb / mlflow / trackio)."""
        original = model.generate

        def timed_generate(*args, **kwargs):
            start = time.perf_counter()
            try:
                with self.peaks.phase("generate"):  # on CUDA its end waits for generate's kernels
                    return original(*args, **kwargs)
            finally:
                self.gate.generate_seconds += time.perf_counter() - start

        model.generate = timed_generate

    def mark_update(self, trainer: GRPOTrainer) -> None:
        """Wrap this trainer's `_prepare_inputs` (generate, score; `training_step` calls it
        first) to open the step's "update" memory window when it returns."""
        original = trainer._prepare_inputs

        def prepare_then_update(*args, **kwargs):
            inputs = original(*args, **kwargs)
            if self.gate.update_window is None:
                self.gate.update_window = self.peaks.open("update")  # on CUDA: after generation's kernels
                self.gate.update_start = time.perf_counter()
            return inputs

        trainer._prepare_inputs = prepare_then_update

    def train(self) -> None:
        try:
            self.trainer.train()
        except Exception:  # noqa: BLE001 - reported to the driver by run()
            self.error = traceback.format_exc()
        finally:
            self.gate.paused.release()

    def run(self, steps: int) -> list[dict]:
        """`steps` more optimizer steps of the paused trainer, as `StepRecord` dicts."""
        self.gate.records, self.gate.remaining = [], steps
        self.gate.resume.release()
        self.gate.paused.acquire()
        if self.error is not None:
            raise RuntimeError(f"GRPOTrainer.train() failed:\n{self.error}")
        if len(self.gate.records) < steps:
            raise RuntimeError(f"GRPOTrainer stopped after {len(self.gate.records)} of {steps} steps (max_steps reached)")
        return [asdict(record) for record in self.gate.records]

    def accuracy(self, rows: list[dict], max_new_tokens: int) -> float:
        """Greedy accuracy of the paused trainer's model."""
        return greedy_accuracy(self.trainer.model, self.tokenizer, rows, max_new_tokens)

    def close(self) -> None:
        """Let `train()` return: the next step end tells the trainer to stop."""
        self.gate.stopping = True
        self.gate.resume.release()
        self.thread.join(timeout=60)
        self.peaks.stop()
