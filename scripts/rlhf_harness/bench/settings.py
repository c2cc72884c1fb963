"""Model sizes and the settings every arm is built from. Plain data, no torch: the driver
process imports only this, and leaves the heavy libraries to the workers."""

from __future__ import annotations

from dataclasses import dataclass

MODEL_SIZES: dict[str, dict[str, int]] = {
    # for the smoke test only: numbers from it mean nothing
    "tiny": {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128},
    # 2.65M parameters: the size of the first reference measurements
    "small": {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 512},
    # about 21M parameters: where compute, not per-call overhead, should dominate
    "large": {"hidden_size": 512, "num_layers": 8, "num_heads": 8, "intermediate_size": 1024},
}
MAX_POSITIONS = 128
"""Rotary positions of every benchmark model: well above the 6 prompt + 32 response tokens."""
MAX_PROMPT_TOKENS = 8
"""Longest prompt (tokens) the rlhf arm admits (`data.max_prompt_tokens`): the 6-character sums fit."""


@dataclass
class BenchSettings:
    """The numbers every arm is built from: one instance is sent to every worker."""

    model_dir: str
    """Checkpoint (model + tokenizer) every arm loads its own fresh copy from."""
    work_dir: str
    """Scratch directory; each arm writes under `<work_dir>/<arm>`."""
    prompts: int = 16
    """Prompts per step."""
    samples: int = 8
    """Sampled responses per prompt (the GRPO group size)."""
    max_new_tokens: int = 32
    """Longest response."""
    lr: float = 1e-4
    """AdamW learning rate (betas (0.9, 0.999), no weight decay, grad-norm clip 1.0 in every arm)."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up steps."""
    lr_schedule: str = "constant"
    """'constant' or 'cosine' (down to 10% of lr at `total_steps`)."""
    total_steps: int = 100
    """Steps each arm may run: the horizon of the LR schedule and TRL's `max_steps`."""
    threads: int = 2
    """torch intra-op threads of every arm."""
    dtype: str = "float32"
    """Compute dtype of every arm: float32, or bfloat16 autocast over float32 weights (rlhf's
    `model.dtype`, TRL's `bf16`, the floor's `torch.autocast`)."""
    param_dtype: str = "float32"
    """Weights of the rlhf arms (`model.param_dtype`): float32, or bfloat16 with float32 master
    weights in the optimiser (needs dtype bfloat16). TRL and the floor keep float32 weights."""
    seed: int = 0
    """Seed of the prompt order and of sampling."""
    micro_batch_size: int = 0
    """Sequences per forward/backward of the update (0: all B at once); the micro-batches of a
    step accumulate their gradients into its one optimiser step. Must divide B."""
    device: str = "cpu"
    """Where every arm generates and trains: 'cpu' or 'cuda'."""

    @property
    def batch_size(self) -> int:
        """Sequences per step and per optimiser step (B)."""
        return self.prompts * self.samples

    @property
    def update_micro_batch(self) -> int:
        """Sequences per forward/backward of the update."""
        return self.micro_batch_size or self.batch_size
