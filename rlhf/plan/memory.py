"""Byte arithmetic of training and generation memory: pure functions of plain numbers.

Notation: P parameters, W data-parallel world size, h hidden size, L layers, K key/value
heads, d head dim, I MLP width, V vocabulary, T tokens (sequences x padded length).

Mixed-precision AdamW (Rajbhandari et al. 2020, "ZeRO", section 3): weights and gradients in
the weight dtype, optimizer state = two fp32 moments (8 B/param) plus an fp32 master copy
(4 B/param) when the weights themselves are not fp32. ZeRO stage 1 shards the optimizer
state over W, stage 2 also the gradients, stage 3 also the weights; CPU offload moves the
optimizer state (and the weights, stage 3 only) to host memory.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30
"""Bytes per GiB: every size in the report is in GiB (an '80 GB' GPU has 80 GiB)."""

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
"""Bytes per element of the dtypes recipes name."""


@dataclass(frozen=True)
class TrainState:
    """Per-device bytes of one trained model's state (device and host memory)."""

    weights: float
    gradients: float
    optimizer: float
    host_weights: float = 0.0
    """Weights CPU offload moved to host memory (this device's shard)."""
    host_optimizer: float = 0.0
    """Optimizer state CPU offload moved to host memory (this device's shard)."""


def adam_state_bytes_per_param(weight_bytes: int) -> int:
    """AdamW's state per parameter: two fp32 moments, plus an fp32 master copy of 16-bit weights."""
    return 8 + (4 if weight_bytes < 4 else 0)


def train_state_bytes(num_params: int, weight_bytes: int, zero_stage: int, world_size: int,
                      offload_optimizer: bool = False, offload_params: bool = False) -> TrainState:
    """Per-device memory of a model trained with AdamW under ZeRO `zero_stage` (0: none).

    Example: 1e9 params, bf16 (2 B), W = 8: stage 0 keeps 2 + 2 + 12 = 16 GB per device;
    stage 1: 2 + 2 + 12/8 = 5.5 GB; stage 2: 2 + 2/8 + 12/8 = 3.75 GB; stage 3: 16/8 = 2 GB.
    """
    weights = num_params * weight_bytes / (world_size if zero_stage >= 3 else 1)
    gradients = num_params * weight_bytes / (world_size if zero_stage >= 2 else 1)
    optimizer = num_params * adam_state_bytes_per_param(weight_bytes) / (world_size if zero_stage >= 1 else 1)
    host_weights = host_optimizer = 0.0
    if offload_optimizer:
        host_optimizer, optimizer = optimizer, 0.0
    if offload_params and zero_stage >= 3:
        host_weights, weights = weights, 0.0
    return TrainState(weights, gradients, optimizer, host_weights, host_optimizer)


def frozen_weight_bytes(num_params: int, weight_bytes: int, zero_stage: int, world_size: int) -> float:
    """Per-device bytes of a frozen model (reference, reward model): sharded only by stage 3."""
    return num_params * weight_bytes / (world_size if zero_stage >= 3 else 1)


def activation_elements_per_token_layer(hidden: int, kv_width: int, intermediate: int) -> int:
    """Activations one decoder layer keeps for backward, per token, counted in elements.

    Two RMSNorms (input and output: 4h), q and rotated q (2h), k, rotated k and v (3 K*d), the
    attention output (h), and the SwiGLU MLP's gate, up, act(gate) and product (4I). Assumes a
    fused (flash/SDPA) attention kernel, so no T x T score matrix is stored, and no dropout.
    """
    return 7 * hidden + 3 * kv_width + 4 * intermediate


def activation_bytes(tokens: int, layers: int, hidden: int, kv_width: int, intermediate: int,
                     act_bytes: int, checkpointing: bool) -> float:
    """Activation memory of one forward/backward over `tokens` tokens.

    Without checkpointing every layer keeps ``activation_elements_per_token_layer`` values per
    token. With gradient checkpointing only each layer's input (h per token) is kept, plus the
    full activations of the one layer being recomputed during backward.
    """
    per_layer = tokens * activation_elements_per_token_layer(hidden, kv_width, intermediate) * act_bytes
    if not checkpointing:
        return layers * per_layer
    return layers * tokens * hidden * act_bytes + per_layer


def logits_bytes(tokens: int, vocab: int) -> float:
    """The fp32 logits of a training micro-batch and their log-softmax/gradient (2 x T x V x 4 B).

    With a 150k vocabulary this alone is ~1.2 MB per token, often more than the activations.
    """
    return 2 * tokens * vocab * 4


def kv_cache_bytes(tokens: int, layers: int, kv_heads: int, head_dim: int, dtype_bytes: int,
                   tensor_parallel: int = 1) -> float:
    """Rollout KV cache: 2 (K and V) x L x K x d x dtype bytes x T, split over TP ranks."""
    return 2 * layers * kv_heads * head_dim * dtype_bytes * tokens / tensor_parallel
