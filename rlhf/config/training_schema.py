"""Recipe sections of RL training: the actor, the critic, the reference model and the algorithm.

Split from :mod:`rlhf.config.schema` (which assembles the whole recipe) so that each file stays
one readable page; the conventions are the same: every field has a default and a one-line
docstring, which is the reference documentation of its key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class OptimizationConfig:
    """What the actor and the critic share: the AdamW optimiser and the mini-batch schedule."""

    lr: float = 1e-6
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW (beta1, beta2)."""
    warmup_steps: int = 0
    """Optimiser steps of linear learning-rate warm-up from 0."""
    lr_schedule: str = "constant"
    """After warm-up: 'constant' or 'cosine' (decays to 10% of lr at the last step)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0: no clipping)."""
    ppo_epochs: int = 1
    """Passes over each RL batch."""
    mini_batch_size: int = 256
    """Sequences per optimiser step (must divide train_batch_size * rollout.n)."""
    micro_batch_size: int = 64
    """Sequences per forward/backward pass; gradients accumulate up to mini_batch_size."""


@dataclass
class OffPolicyConfig:
    """Correction for tokens the rollout engine sampled with a policy other than the trainer's
    (stale weights in async runs, or a numerically different engine; see
    rlhf.algorithms.off_policy). Needs rollout.logprobs: true."""

    correction: str = "none"
    """'none', 'tis' (truncated token weights), 'mis' (sequences outside a ratio band dropped),
    'icepop' (tokens outside a ratio band dropped) or 'decoupled' (AReaL's decoupled PPO)."""
    tis_cap: float = 2.0
    """TIS: token weights pi_trainer / pi_rollout are capped at this value (Yao et al. 2025: 2)."""
    mis_bounds: list[float] = field(default_factory=lambda: [0.5, 2.0])
    """MIS: [lower, upper]; sequences whose ratio leaves the band are dropped."""
    mis_ratio: str = "geometric"
    """MIS: a sequence's ratio, 'geometric' (exp of the token-mean log-ratio) or 'product'."""
    icepop_bounds: list[float] = field(default_factory=lambda: [0.5, 5.0])
    """IcePop: [alpha, beta]; tokens whose ratio leaves the band are dropped (paper: 0.5, 5)."""
    decoupled_cap: Optional[float] = None
    """Decoupled PPO: cap on the weight pi_proximal / pi_behaviour (null: uncapped, as AReaL)."""

    def bounds(self):
        """These numbers as the pure corrections take them (rlhf.algorithms.off_policy.OffPolicyBounds)."""
        from rlhf.algorithms.off_policy import OffPolicyBounds

        return OffPolicyBounds(tis_cap=self.tis_cap, mis_bounds=tuple(self.mis_bounds), mis_ratio=self.mis_ratio,
                               icepop_bounds=tuple(self.icepop_bounds), decoupled_cap=self.decoupled_cap)


@dataclass
class ActorConfig(OptimizationConfig):
    """Policy optimisation: optimiser, batching and the clipped surrogate."""

    policy_loss: str = "ppo"
    """'ppo' (token-level ratio) or 'gspo' (sequence-level ratio, Zheng et al. 2025)."""
    clip_low: float = 0.2
    """Clip range below 1: ratios under 1 - clip_low are clipped (GSPO uses ~3e-4)."""
    clip_high: float = 0.2
    """Clip range above 1 (DAPO's clip-higher raises it, e.g. 0.28; GSPO uses ~4e-4)."""
    dual_clip: Optional[float] = None
    """Dual-clip constant c > 1 bounding the loss of negative-advantage tokens (null: off)."""
    loss_agg: str = "token-mean"
    """How token losses become one number (see rlhf.algorithms.losses.LOSS_AGG_MODES)."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus subtracted from the policy loss (T1 uses it)."""
    off_policy: OffPolicyConfig = field(default_factory=OffPolicyConfig)
    """Off-policy correction of the policy loss (rollout-trainer mismatch, stale samples)."""


@dataclass
class HLGaussConfig:
    """The support of the HL-Gauss classification critic (Farebrother et al. 2024)."""

    num_bins: int = 51
    """Number of bins the value range is split into."""
    v_min: float = -1.0
    """Lowest representable value (returns below are clamped)."""
    v_max: float = 1.0
    """Highest representable value (returns above are clamped)."""
    sigma_ratio: float = 0.75
    """Std of the target Gaussian as a multiple of the bin width."""


@dataclass
class CriticConfig(OptimizationConfig):
    """The value model of PPO (used when algorithm.advantage needs values, i.e. 'gae')."""

    lr: float = 1e-5
    """Peak learning rate of the critic's AdamW."""
    path: str = ""
    """'' : the actor's initial backbone with a fresh value head; else a causal LM or a saved
    value/reward model directory (its value_head.safetensors is loaded when present)."""
    loss: str = "mse"
    """'mse' (clipped squared error) or 'hl_gauss' (cross-entropy on a histogram of values)."""
    hl_gauss: HLGaussConfig = field(default_factory=HLGaussConfig)
    """Support of the classification critic, used when critic.loss is 'hl_gauss'."""
    value_clip: Optional[float] = 0.2
    """Clip new values to old ± value_clip in the mse loss (null: no clipping)."""
    warmup_rl_steps: int = 0
    """Critic warm-up: the first N RL steps train only the critic (the actor waits)."""


@dataclass
class AnchorConfig:
    """T1's dynamic anchor (Hou et al. 2025): the reference follows the policy."""

    every: int = 0
    """Copy the current policy into the reference every N RL steps (0: never)."""
    ema: float = 0.0
    """Each step, reference <- ema * reference + (1 - ema) * policy (0: off)."""


@dataclass
class RefConfig:
    """The reference policy, used only when a KL term is on."""

    path: str = ""
    """Reference model path ('': a frozen copy of the initial policy)."""
    anchor: AnchorConfig = field(default_factory=AnchorConfig)
    """Move the reference with the policy (off by default: a fixed reference)."""


@dataclass
class KLConfig:
    """A KL(policy || reference) regulariser."""

    coef: float = 0.0
    """Weight beta of the KL term (0: off, and no reference model is kept)."""
    kind: str = "k3"
    """KL estimator: k1, abs, k2, k3 (alias low_var_kl)."""
    placement: str = "loss"
    """'loss': add beta * KL to the policy loss; 'reward': subtract it from token rewards."""
    adaptive: bool = False
    """Adapt beta towards kl.target (Ziegler et al. 2019); false: beta stays kl.coef."""
    target: float = 6.0
    """Adaptive controller: target KL per sequence (sum over its tokens)."""
    horizon: int = 10000
    """Adaptive controller: samples over which beta may change by at most 20%."""


@dataclass
class ArcherConfig:
    """ArCHer (Zhou et al. 2024): an utterance-level critic trained off-policy by TD from a
    replay buffer of past turns, with target networks; its advantage Q(s, a) - V(s) of each
    turn drives the token-level policy update within the turn."""

    buffer_size: int = 4096
    """Turns the replay buffer keeps (the oldest leave first)."""
    critic_updates: int = 4
    """Critic gradient steps per RL step, each on a fresh sample from the buffer."""
    critic_batch_size: int = 64
    """Turns per critic gradient step, at least: whole trajectories are drawn from the buffer
    until their turns reach it (one forward reads all the turns of a trajectory)."""
    tau: float = 0.1
    """Soft update of the target networks: target <- (1 - tau) target + tau online."""
    critic_lr: float = 1e-4
    """Learning rate of the utterance critic."""
    backbone: str = "separate"
    """'separate': the critic has a backbone of its own, initialised from critic.path (or the
    policy's checkpoint); 'policy': the critic's heads read the policy's hidden states (frozen
    for the critic: only the heads learn from TD)."""
    warmup_steps: int = 0
    """RL steps that only train the critic (the policy waits for a useful advantage)."""
    bootstrap_truncated: bool = False
    """False: an episode cut by env.max_turns or env.max_total_tokens is over (its last turn's
    target is its reward, as the policy's return is). True: bootstrap V̄ after a cut, for
    environments whose budget is only a training convenience."""


@dataclass
class AlgorithmConfig:
    """Advantage estimation and regularisation."""

    advantage: str = "grpo"
    """Advantage estimator (see rlhf.algorithms.advantages for the registry; drgrpo is GRPO
    without the division by the group's standard deviation)."""
    gamma: float = 1.0
    """Discount over response tokens (gae, reinforce_pp)."""
    lam: float = 0.95
    """GAE's lambda (bias-variance trade-off of the advantage)."""
    whiten_advantages: bool = False
    """Whiten the estimator's advantages over the batch's valid tokens (standard with gae)."""
    turn_gamma: float = 1.0
    """Multi-turn runs: discount over turns of per-turn rewards (turn-level estimators, archer)."""
    archer: ArcherConfig = field(default_factory=lambda: ArcherConfig())
    """ArCHer's off-policy utterance-level critic (algorithm.advantage archer)."""
    kl: KLConfig = field(default_factory=KLConfig)
    """The KL regulariser."""


@dataclass
class TrainConfig:
    """The training backend of the actor and the critic."""

    engine: str = "torch"
    """'torch' (plain PyTorch, one process) or 'deepspeed' (ZeRO; pip install deepspeed)."""
    zero_stage: int = 0
    """DeepSpeed ZeRO stage: 0 (none), 1 (optimiser state), 2 (+ gradients), 3 (+ parameters)."""
    offload_optimizer: bool = False
    """DeepSpeed: keep optimiser state on the CPU and step it there (needs zero_stage >= 1)."""
    offload_params: bool = False
    """DeepSpeed: keep partitioned parameters on the CPU (needs zero_stage 3)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward instead of storing them (less memory, more compute)."""
    max_tokens_per_micro_batch: int = 0
    """Token budget of one forward (0: off): length-sorted rows are grouped so that rows ×
    (longest prompt + longest response) stays within it, up to {actor,critic}.micro_batch_size
    rows. Short rows then share a forward, long ones do not (applies to every training and
    logprob/value forward of the actor, the critic and the reference)."""


@dataclass
class SyncConfig:
    """The weight sync from trainer to rollout engine (bucketed), and its verification: the
    rollout engine and the trainer must score a fixed probe batch alike after a sync."""

    check_every: int = 10
    """Run the probe check after every N-th weight sync (0: never)."""
    tolerance: Optional[float] = None
    """Largest allowed |rollout − trainer| logprob on a probe token (null: 1e-3 for float32, 0.5 for bfloat16)."""
    bucket_mb: int = 256
    """Largest bucket of weights gathered (ZeRO-3) and sent to the rollout engine at a time:
    bounds the extra memory of a sync."""
    probe_size: int = 8
    """Prompts in the probe batch (the first eval prompts, else the first training rows)."""
