"""Apply the memory arithmetic to every role of a recipe: the per-device items of `rlhf plan`.

Layout assumed (the hybrid engine of ARCHITECTURE.md): every device holds a data-parallel
replica of every role (actor, its rollout, reference, critic, reward models). Memory peaks in
one phase at a time: the rollout (KV cache), the actor update or the critic update
(activations, logits and, with the torch engine, gradients, which it frees after each step);
weights, optimizer state and frozen models stay resident throughout. Peak per device =
resident + the largest phase. Sizes assume every sequence padded to its maximum length.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from rlhf.config.lengths import longest_sequence
from rlhf.config.schema import RecipeConfig
from rlhf.plan.memory import (
    DTYPE_BYTES,
    GIB,
    activation_bytes,
    frozen_weight_bytes,
    kv_cache_bytes,
    logits_bytes,
    train_state_bytes,
)
from rlhf.plan.shapes import (
    ModelShape,
    causal_lm_parameters,
    load_shape,
    lora_parameters,
    scorer_parameters,
    shape_from_hf_config,
)

RESIDENT = "resident"
"""Phase of what stays in device memory for the whole run."""

TRAINED_WEIGHT_BYTES = 4
"""Both engines keep trained weights, gradients and AdamW moments in float32 unless
model.param_dtype is bfloat16 (2-byte weights, float32 masters in the optimizer state);
model.dtype only sets the autocast compute dtype."""
GRADIENT_BYTES = 4
"""Gradients the optimizer steps with are float32: of the weights, or of bf16 weights' masters."""

RM_DTYPE_DEFAULT = "bfloat16"
"""A reward model's kwargs.dtype 'auto' means bfloat16 on a GPU."""


@dataclass(frozen=True)
class Item:
    """One line of the plan: what, in which phase, how many bytes per device (and on the host)."""

    name: str
    phase: str
    device_bytes: float
    host_bytes: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class Layout:
    """Devices and the training engine's sharding settings (as its registry entry declares)."""

    devices: int = 1
    device_memory_gib: float = 80.0
    engine: str = "torch"
    """The training engine, described ('torch', 'deepspeed ZeRO-3')."""
    data_parallel: bool = False
    """The engine can shard training over several devices."""
    zero_stage: int = 0
    offload_optimizer: bool = False
    offload_params: bool = False
    gradients_resident: bool = False
    gradient_checkpointing: bool = False
    tensor_parallel: int = 1


@dataclass
class Plan:
    """Every role's items and the parameter counts behind them."""

    layout: Layout
    items: list[Item] = field(default_factory=list)
    parameters: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)
    """Reasons the run cannot start whatever the peak (a memory budget too small for its use)."""


def layout_of(config: RecipeConfig, devices: int | None, device_memory_gib: float | None) -> Layout:
    """The layout of `config`'s train section (absent keys: torch engine, no ZeRO), with the
    device count from the command line, else the actor's pool (`resources.pools`, backend ray),
    else 1; device memory from the command line, else 80 GiB."""
    from rlhf.engines.registry import training_engine
    from rlhf.rollout.registry import rollout_engine

    train = config.train
    engine = training_engine(train.engine)
    sharding = engine.sharding(train)
    pool = config.resources.pools.get(config.resources.actor)
    recipe_devices = pool.nodes * pool.devices_per_node if pool is not None and config.distributed.backend == "ray" else None
    return Layout(
        devices=devices or recipe_devices or 1,
        device_memory_gib=device_memory_gib or 80.0,
        engine=engine.describe(train),
        data_parallel=engine.data_parallel,
        zero_stage=sharding.zero_stage,
        offload_optimizer=sharding.offload_optimizer,
        offload_params=sharding.offload_params,
        gradients_resident=sharding.gradients_resident,
        gradient_checkpointing=train.gradient_checkpointing,
        tensor_parallel=rollout_engine(config.rollout.engine).ranks_per_engine(config),
    )


def policy_shape(config: RecipeConfig) -> ModelShape:
    """The policy's shape: the tiny Llama of model.tiny, or model.path's config."""
    if config.model.source != "tiny":
        return load_shape(config.model.path, "model.path", config.model.trust_remote_code)
    from rlhf.models.tiny import tiny_llama_config
    from rlhf.models.tokenizer import build_char_tokenizer

    tiny, tokenizer = config.model.tiny, build_char_tokenizer()
    hf_config = tiny_llama_config(
        len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id or 0,
        eos_token_id=tokenizer.eos_token_id, hidden_size=tiny.hidden_size, num_layers=tiny.num_layers,
        num_heads=tiny.num_heads, intermediate_size=tiny.intermediate_size,
        max_position_embeddings=tiny.max_position_embeddings)
    return shape_from_hf_config(hf_config, source="model.tiny")


def trained_items(role: str, shape: ModelShape, num_params: int, layout: Layout, micro_tokens: int,
                  act_bytes: int, vocab_logits: bool, adapter_params: int = 0, weight_bytes: int = TRAINED_WEIGHT_BYTES) -> list[Item]:
    """Weights, gradients, optimizer state, activations (and logits) of a trained model held in
    `weight_bytes` per weight (2: bfloat16 weights, their float32 masters counted in the
    optimizer state); with `adapter_params` (LoRA) only the adapters have gradients and
    optimizer state, and the frozen base weights are held like a frozen model's."""
    trained = adapter_params or num_params
    state = train_state_bytes(trained, weight_bytes, layout.zero_stage, layout.devices,
                              layout.offload_optimizer, layout.offload_params)
    state = replace(state, gradients=state.gradients * GRADIENT_BYTES / weight_bytes)
    if adapter_params:
        base = frozen_weight_bytes(num_params, weight_bytes, layout.zero_stage, layout.devices)
        state = replace(state, weights=state.weights + base)
    update = f"{role} update"
    # the torch engine frees gradients after each optimizer step; DeepSpeed keeps its buffers
    grad_phase = RESIDENT if layout.gradients_resident else update
    items = [
        Item(f"{role} weights", RESIDENT, state.weights, state.host_weights,
             "offloaded to host" if state.host_weights else ("bf16" if weight_bytes == 2 else "")),
        Item(f"{role} gradients", grad_phase, state.gradients, note="fp32; freed after each step" if grad_phase != RESIDENT else "fp32"),
        Item(f"{role} optimizer state", RESIDENT, state.optimizer, state.host_optimizer,
             ("AdamW moments" + (" and fp32 masters" if weight_bytes == 2 else "") + ", offloaded to host") if state.host_optimizer
             else ("AdamW fp32 moments" + (" and fp32 master weights" if weight_bytes == 2 else ""))),
        Item(f"{role} activations", update, activation_bytes(
            micro_tokens, shape.num_layers, shape.hidden_size, shape.num_kv_heads * shape.head_dim,
            shape.intermediate_size, act_bytes, layout.gradient_checkpointing),
            note=f"{micro_tokens} tokens per micro-batch" + (", checkpointed" if layout.gradient_checkpointing else "")),
    ]
    if vocab_logits:
        items.append(Item(f"{role} logits", update, logits_bytes(micro_tokens, shape.vocab_size), note="fp32, x2 for log-softmax"))
    return items


def plan_recipe(config: RecipeConfig, layout: Layout,
                shape_of: Callable[[str, str, bool], ModelShape] = load_shape) -> Plan:
    """The per-device memory items of every role `config` uses, under `layout`.

    `shape_of(path, key, trust_remote_code)` resolves other models (reference, critic, reward
    models); tests pass their own. The policy's shape comes from :func:`policy_shape`.
    """
    from rlhf.algorithms.advantages import estimator
    from rlhf.models.lora import shares_base_as_reference

    plan, shape = Plan(layout), policy_shape(config)
    seq_len = longest_sequence(config)
    act_bytes = DTYPE_BYTES[config.model.dtype]
    actor_params = causal_lm_parameters(shape)
    plan.parameters["actor"] = actor_params
    # 1. the actor: trained state, activations and logits of one micro-batch
    lora = config.model.lora
    adapters = lora_parameters(shape, lora.rank, lora.target_modules) if lora.rank > 0 else 0
    if adapters:
        plan.parameters["actor LoRA adapters"] = adapters
    policy_bytes = DTYPE_BYTES[config.model.param_dtype]
    plan.items += trained_items("actor", shape, actor_params, layout, forward_tokens(config, config.actor.micro_batch_size, seq_len), act_bytes, True,
                                adapters, policy_bytes)
    # 2. the rollout's KV cache (and the engine's own weight copy, or its whole reservation)
    plan.items += rollout_items(config, shape, actor_params, layout, seq_len, plan.blockers)
    # 3. the frozen reference, only when a KL term needs it (with LoRA usually the actor's own
    #    base with the adapters switched off: no copy)
    anchor_moves = bool(config.ref.anchor.every or config.ref.anchor.ema)
    if config.algorithm.kl.coef > 0 and not shares_base_as_reference(lora, config.ref.path, anchor_moves):
        ref = shape_of(config.ref.path, "ref.path", config.model.trust_remote_code) if config.ref.path else shape
        plan.parameters["reference"] = causal_lm_parameters(ref)
        ref_bytes = TRAINED_WEIGHT_BYTES if config.ref.anchor.ema else policy_bytes  # an EMA anchor keeps it float32
        plan.items.append(Item("reference weights", RESIDENT, frozen_weight_bytes(
            plan.parameters["reference"], ref_bytes, 0, layout.devices), note=f"frozen {'bf16' if ref_bytes == 2 else 'fp32'} copy of the policy"))
    # 4. the critic, when the advantage estimator needs values
    if estimator(config.algorithm.advantage).needs_critic:
        critic = shape_of(config.critic.path, "critic.path", config.model.trust_remote_code) if config.critic.path else shape
        outputs = config.critic.hl_gauss.num_bins if config.critic.loss == "hl_gauss" else 1
        plan.parameters["critic"] = scorer_parameters(critic, outputs)
        plan.items += trained_items("critic", critic, plan.parameters["critic"], layout,
                                    forward_tokens(config, config.critic.micro_batch_size, seq_len), act_bytes, False)
    # 5. reward models named by orm/prm sources
    plan.items += reward_model_items(config, plan, shape_of)
    plan.notes += assumptions(layout, config.model.param_dtype)
    return plan


def forward_tokens(config: RecipeConfig, rows: int, seq_len: int) -> int:
    """Tokens of the largest forward: `rows` full-length sequences, or the token budget
    (`train.max_tokens_per_micro_batch`) when that is smaller (one sequence at least)."""
    budget = config.train.max_tokens_per_micro_batch
    return rows * seq_len if budget <= 0 else min(rows * seq_len, max(budget, seq_len))


def rollout_items(config: RecipeConfig, shape: ModelShape, actor_params: int, layout: Layout, seq_len: int,
                  blockers: list[str] | None = None) -> list[Item]:
    """The KV cache of the sequences one device generates at once, and the engine's own copy of
    the weights; an engine that reserves a share of device memory up front (vLLM's
    `gpu_memory_utilization`) is counted at that share, which must hold both (else a blocker)."""
    from rlhf.engines.registry import training_engine
    from rlhf.rollout.registry import rollout_engine

    rollout, dtype_bytes = config.rollout, DTYPE_BYTES[config.model.dtype]
    memory = rollout_engine(rollout.engine).memory(config)
    replicas = max(1, layout.devices // layout.tensor_parallel)
    sequences = math.ceil(config.data.train_batch_size * rollout.n / replicas)
    if rollout.micro_batch_size > 0:
        sequences = min(sequences, rollout.micro_batch_size)
    tokens = sequences * seq_len
    kv = Item("rollout KV cache", "rollout", kv_cache_bytes(
        tokens, shape.num_layers, shape.num_kv_heads, shape.head_dim, dtype_bytes, layout.tensor_parallel),
        note=f"{sequences} sequences x {seq_len} tokens" + (f", TP {layout.tensor_parallel}" if layout.tensor_parallel > 1 else ""))
    # an engine sharing the trainer's module needs a copy when the trainer partitions it (ZeRO-3)
    copy = memory.weight_copy or training_engine(config.train.engine).partitions_module(config.train)
    items = [kv] + ([Item("rollout weights (engine copy)", "rollout", actor_params * dtype_bytes / layout.tensor_parallel,
                          note=f"{config.model.dtype}")] if copy else [])
    if memory.reserved_share is None:
        return items
    reserved = memory.reserved_share * layout.device_memory_gib * GIB
    needed = sum(item.device_bytes for item in items)
    phase = "rollout" if memory.released_while_training else RESIDENT
    if needed > reserved and blockers is not None:
        blockers.append(
            f"rollout.vllm.gpu_memory_utilization={memory.reserved_share:g} gives the rollout engine {reserved / GIB:.2f} GiB of "
            f"{layout.device_memory_gib:g} GiB, less than its weights and KV cache need ({needed / GIB:.2f} GiB): raise it, or lower "
            "rollout.micro_batch_size / max_new_tokens")
    note = (f"gpu_memory_utilization {memory.reserved_share:g}: weights + KV cache ({needed / GIB:.2f} GiB) within it"
            + ("; released while training (sleep mode)" if memory.released_while_training else "; held all run (no sleep mode)"))
    return [Item("rollout engine reservation", phase, reserved, note=note)]


def reward_model_items(config: RecipeConfig, plan: Plan, shape_of: Callable[[str, str, bool], ModelShape]) -> list[Item]:
    """Frozen weights of each orm/prm reward source (kwargs.path), resident on every device."""
    items = []
    for index, source in enumerate(config.reward.sources):
        path = source.kwargs.get("path") if source.type in ("orm", "prm") else None
        if not path:
            continue
        key = f"reward.sources[{index}].kwargs.path"
        shape = shape_of(path, key, bool(source.kwargs.get("trust_remote_code", False)))
        outputs = 2 if source.kwargs.get("kind") == "two_class" else 1
        params = scorer_parameters(shape, outputs, bias=False)
        name = f"RM {path.rstrip('/').split('/')[-1]}"
        dtype = source.kwargs.get("dtype", "auto")
        dtype = RM_DTYPE_DEFAULT if dtype == "auto" else dtype
        plan.parameters[name] = params
        items.append(Item(f"{name} weights", RESIDENT, params * DTYPE_BYTES[dtype], note=f"frozen, {dtype}"))
    return items


def assumptions(layout: Layout, param_dtype: str = "float32") -> list[str]:
    """The assumptions behind the numbers, in the words the report prints."""
    weights = ("trained models keep fp32 weights, gradients and AdamW moments (16 B/param before sharding)" if param_dtype == "float32" else
               "the actor keeps bf16 weights, fp32 gradients of its fp32 master weights and AdamW moments (2 + 4 + 12 B/param "
               "before sharding; the critic fp32, 16 B/param)")
    notes = [
        "every device holds a data-parallel replica of each role; peak = resident + the largest phase",
        f"{weights}; model.dtype is the autocast compute dtype (activations, KV cache)",
        ("activations per layer and token: (7h + 3 kv_heads x head_dim + 4 intermediate) x dtype bytes "
         "(fused attention, no T x T scores); checkpointing keeps h per layer and token plus one layer"),
        ("actor.micro_batch_size counts sequences per device; sequences are padded to "
         "max_prompt_tokens + max_new_tokens (a multi-turn run: env.max_total_tokens); the frozen reference and reward models are replicated, not sharded"),
        "not counted: CUDA context (~0.5-1 GiB), allocator fragmentation, reward-model and log-prob forward passes",
    ]
    if not layout.data_parallel and layout.devices > 1:
        notes.append(f"train.engine {layout.engine} does not shard: every device holds the full state")
    return notes
