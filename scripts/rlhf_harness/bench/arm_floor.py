"""The floor: the least work one GRPO step needs, in plain PyTorch around HF `generate`.

One step:
    (1) draw P prompts, repeat each n times (a prompt's samples are consecutive)
    (2) sample n responses per prompt with `model.generate`
    (3) score them; group-normalised advantages (score - group mean) / (group std + eps)
    (4) forward and backward over the B prompt+response rows, in micro-batches of
        `settings.update_micro_batch` rows whose gradients accumulate, loss -(A · log π(token))
        as a mean over all response tokens of the step; grad-norm clip, ONE AdamW step

With one on-policy update the PPO/GRPO ratio is exactly 1 and no clipping applies, so this
loss has the gradient rlhf's and TRL's clipped surrogates have; nothing else (no old or
reference logprobs, no entropy, no logging) is computed.

Notation: B = P × n sequences, P prompt tokens, R response tokens, V vocabulary.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import asdict

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlhf_harness.bench.common import (
    StepRecord,
    greedy_accuracy,
    mask_after_eos,
    scores,
    train_rows,
)
from rlhf_harness.bench.memory import PhasePeaks
from rlhf_harness.bench.settings import BenchSettings


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """[B] rewards of consecutive groups of `group_size` -> [B] (r - group mean) / (group std + eps)."""
    grouped = rewards.view(-1, group_size)
    return ((grouped - grouped.mean(dim=1, keepdim=True)) / (grouped.std(dim=1, keepdim=True) + eps)).view(-1)


class FloorArm:
    """HF `generate` + forward/backward per micro-batch + one optimiser step over the same tokens;
    no framework around it."""

    def __init__(self, settings: BenchSettings):
        if settings.lr_schedule != "constant" or settings.warmup_steps:
            raise ValueError("the floor arm runs at a constant learning rate (throughput mode only)")
        torch.set_num_threads(settings.threads)
        # rlhf turns flush-to-zero on too (seed_everything): the floor keeps every free speed-up
        torch.set_flush_denormal(True)
        torch.manual_seed(settings.seed)
        self.settings = settings
        self.rows = train_rows()
        self.rng = random.Random(settings.seed)
        self.tokenizer = AutoTokenizer.from_pretrained(settings.model_dir)
        self.device = torch.device(settings.device)
        self.model = AutoModelForCausalLM.from_pretrained(settings.model_dir, dtype=torch.float32).to(self.device)
        self.model.train()
        # fused: the fastest AdamW torch has on CPU (TRL's default `adamw_torch_fused` too)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=settings.lr, betas=(0.9, 0.999), weight_decay=0.0, fused=True)
        self.peaks = PhasePeaks(settings.device)

    def run(self, steps: int) -> list[dict]:
        """`steps` timed steps, as `StepRecord` dicts."""
        return [asdict(self.step()) for _ in range(steps)]

    def step(self) -> StepRecord:
        with self.peaks.phase("step"):
            record = self.timed_step()
        record.peak_memory_mib = self.peaks.pop()
        return record

    def timed_step(self) -> StepRecord:
        """Steps 1-4 of the module docstring, timed, with the peak memory of 2 and 4 (on CUDA
        their memory windows end by waiting for their kernels, before their time is read)."""
        start = time.perf_counter()
        n = self.settings.samples
        # 1. prompts, each repeated n times
        rows = self.rng.sample(self.rows, self.settings.prompts)
        encoded = self.tokenizer([row["prompt"] for row in rows], return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False).to(self.device)
        prompt_ids = encoded["input_ids"].repeat_interleave(n, dim=0)
        prompt_mask = encoded["attention_mask"].repeat_interleave(n, dim=0)
        # 2. sample
        generate_start = time.perf_counter()
        with self.autocast(), self.peaks.phase("generate"):
            response_ids = self.generate(prompt_ids, prompt_mask)
        generate_seconds = time.perf_counter() - generate_start
        response_mask = mask_after_eos(response_ids, self.tokenizer.eos_token_id)
        # 3. score, advantages
        texts = self.tokenizer.batch_decode(response_ids, skip_special_tokens=True)
        rewards = torch.tensor(scores(texts, [row["ground_truth"] for row in rows for _ in range(n)]))
        advantages = group_advantages(rewards, n).to(self.device)
        # 4. one policy-gradient step
        update_start = time.perf_counter()
        with self.peaks.phase("update"):
            self.policy_gradient_step(prompt_ids, prompt_mask, response_ids, response_mask, advantages)
        update_seconds = time.perf_counter() - update_start
        return StepRecord(
            seconds=time.perf_counter() - start, tokens=int(prompt_mask.sum() + response_mask.sum()), generate_seconds=generate_seconds,
            reward_mean=rewards.mean().item(), response_length_mean=response_mask.sum(dim=1).float().mean().item(),
            update_seconds=update_seconds,
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast on the arm's device when `settings.dtype` asks for it (weights stay float32)."""
        enabled = self.settings.dtype == "bfloat16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()

    @torch.no_grad()
    def generate(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        """[B, R] sampled response ids (pad after a row's EOS)."""
        self.model.eval()
        output = self.model.generate(
            input_ids=prompt_ids, attention_mask=prompt_mask, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
            max_new_tokens=self.settings.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
        )
        self.model.train()
        return output[:, prompt_ids.shape[1] :]

    def policy_gradient_step(self, prompt_ids, prompt_mask, response_ids, response_mask, advantages) -> None:
        """Step 4: backward of every micro-batch's share of the step's loss, then one clipped AdamW step."""
        micro = self.settings.update_micro_batch
        response_tokens = response_mask.sum()  # the loss is a mean over the whole step's response tokens
        for begin in range(0, prompt_ids.shape[0], micro):
            rows = slice(begin, begin + micro)
            with self.autocast():
                loss = self.policy_gradient_loss(
                    prompt_ids[rows], prompt_mask[rows], response_ids[rows], response_mask[rows], advantages[rows], response_tokens)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def policy_gradient_loss(self, prompt_ids, prompt_mask, response_ids, response_mask, advantages, response_tokens) -> torch.Tensor:
        """-(A · log π) summed over the response tokens of these rows, divided by the step's
        `response_tokens`; shapes [b, P], [b, R], [b]."""
        input_ids = torch.cat([prompt_ids, response_ids], dim=1)
        attention_mask = torch.cat([prompt_mask, response_mask], dim=1)
        position_ids = (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)  # left padding does not shift positions
        response_len = response_ids.shape[1]
        # only the R positions that predict response tokens are projected onto the vocabulary
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=response_len + 1, use_cache=False).logits[:, :-1]
        logprobs = torch.log_softmax(logits.float(), dim=-1).gather(-1, response_ids.unsqueeze(-1)).squeeze(-1)
        mask = response_mask.float()
        return -(advantages.unsqueeze(1) * logprobs * mask).sum() / response_tokens

    def accuracy(self, rows: list[dict], max_new_tokens: int) -> float:
        return greedy_accuracy(self.model, self.tokenizer, rows, max_new_tokens)

    def close(self) -> None:
        """Stop the memory sampler."""
        self.peaks.stop()
