"""ArCHer's utterance-level critic: Q1, Q2 and V heads over a backbone, trained off-policy by
TD from a replay buffer of past trajectories, with slowly moving target copies.

Notation: B rows (trajectories) of a multi-turn Batch, K turns (the batch's widest), N sampled
transitions (turns), U distinct trajectories among them, L tokens of a trajectory, H the
backbone's hidden size.

One forward over a trajectory gives the values of every turn, because a causal backbone's
hidden state at position t has read exactly the tokens up to t:

* V(s_k) at the last token before action k starts (the state s_k is everything before it);
* Q(s_k, a_k) at the last token of action k (state and the whole utterance);
* V̄(s_{k+1}) at the last token before action k + 1, and after the last action at the last
  token of the trajectory (used only by a critic that bootstraps truncated episodes).

The math (targets, losses, Polyak averaging, advantages) is :mod:`rlhf.algorithms.archer`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch

from rlhf.algorithms.archer import critic_losses, q_targets, soft_update_, utterance_advantages, v_targets
from rlhf.config.errors import ConfigError
from rlhf.config.training_schema import ArcherConfig
from rlhf.data.batch import Batch
from rlhf.dispatch import ALL, RANK_ZERO, dispatch
from rlhf.workers.replay import ReplayBuffer, Trajectory, trajectories_from_batch

BACKBONES = ("separate", "policy")
MAX_GRAD_NORM = 1.0
"""Gradient clipping of each critic step: bootstrapped targets can spike early in training."""


class UtteranceHeads(torch.nn.Module):
    """Three scalar heads on a hidden state: Q1, Q2 (clipped double Q) and V.

    Each is a two-layer MLP (H → H → 1, ReLU): more than a linear probe, because with the
    'policy' backbone the features are frozen and the heads alone must fit the values. The
    output layers start at zero (a fresh critic predicts 0 everywhere, and its first values come
    from the rewards), and the hidden layers start from a seeded random draw that differs
    between the heads, so the two Q heads do not stay copies of each other.
    """

    def __init__(self, hidden_size: int, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.q1, self.q2, self.v = (self._mlp(hidden_size, generator) for _ in range(3))

    @staticmethod
    def _mlp(hidden_size: int, generator: torch.Generator) -> torch.nn.Sequential:
        mlp = torch.nn.Sequential(torch.nn.Linear(hidden_size, hidden_size), torch.nn.ReLU(), torch.nn.Linear(hidden_size, 1))
        with torch.no_grad():
            mlp[0].weight.copy_(torch.randn(mlp[0].weight.shape, generator=generator) / hidden_size**0.5)
            mlp[0].bias.zero_()
            mlp[2].weight.zero_()
            mlp[2].bias.zero_()
        return mlp

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[n, H] hidden states -> (Q1, Q2, V), each [n] float32."""
        hidden = hidden.float()
        return self.q1(hidden).squeeze(-1), self.q2(hidden).squeeze(-1), self.v(hidden).squeeze(-1)


def padded_inputs(trajectories: list[Trajectory], device: torch.device) -> dict[str, torch.Tensor]:
    """`input_ids`, `attention_mask`, `position_ids` [U, max L] of right-padded trajectories
    (right padding leaves every real token's causal context unchanged)."""
    width = max(trajectory.ids.numel() for trajectory in trajectories)
    input_ids = torch.zeros(len(trajectories), width, dtype=torch.long)
    attention_mask = torch.zeros(len(trajectories), width, dtype=torch.long)
    for row, trajectory in enumerate(trajectories):
        input_ids[row, : trajectory.ids.numel()] = trajectory.ids
        attention_mask[row, : trajectory.ids.numel()] = 1
    position_ids = torch.arange(width).expand(len(trajectories), width)
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device), "position_ids": position_ids.to(device)}


class UtteranceCritic:
    """ArCHer's high-level critic, its target networks, its replay buffer and its optimiser.

    Backbones: 'separate' is a transformers base model of its own (trained with the heads, and
    with a target copy); 'policy' reads the policy module's last hidden states under
    `torch.no_grad` (the policy's weights are never changed here; only the heads learn, and the
    online and target heads share those features).

    The critic has its own `torch.optim.AdamW`, not a DeepSpeed engine: it is small (three MLP
    heads, or one extra backbone), trained off-policy on a few turns per step, and every rank
    keeps a full replica of it (see the dispatch note below), so ZeRO sharding would buy
    nothing and add collectives to a loop that has none.

    Dispatch: every method but `state_dict` is ``ALL``: each rank of the hosting group receives
    the same batch and runs the same computation, so the replicas (same seed, same buffer
    generator, same samples) stay equal, and with the 'policy' backbone every rank joins the
    policy's forward, which a ZeRO-3 policy needs (a ``RANK_ZERO`` call would hang there and let
    the replicas drift apart). The answer is rank 0's. `state_dict` is ``RANK_ZERO``: the
    replicas are equal, one copy goes into the checkpoint.
    """

    def __init__(self, heads: UtteranceHeads, buffer: ReplayBuffer, *, gamma: float, tau: float, lr: float,
                 device: torch.device, backbone: torch.nn.Module | None = None, policy_module: torch.nn.Module | None = None,
                 micro_batch_size: int = 8, bootstrap_truncated: bool = False):
        if (backbone is None) == (policy_module is None):
            raise ValueError("UtteranceCritic needs exactly one of a backbone of its own or the policy module")
        self.device = torch.device(device)
        self.heads = heads.to(self.device)
        self.target_heads = self._frozen_copy(self.heads)
        self.backbone = backbone.to(self.device).eval() if backbone is not None else None
        self.target_backbone = self._frozen_copy(self.backbone) if backbone is not None else None
        self.policy_module = policy_module
        self.buffer = buffer
        self.gamma, self.tau, self.micro_batch_size = gamma, tau, micro_batch_size
        self.bootstrap_truncated = bootstrap_truncated
        self.optimizer = torch.optim.AdamW(self._online_parameters(), lr=lr)
        self.updates = 0

    @staticmethod
    def _frozen_copy(module: torch.nn.Module) -> torch.nn.Module:
        target = copy.deepcopy(module).eval()
        target.requires_grad_(False)
        return target

    def _online_parameters(self) -> list[torch.nn.Parameter]:
        modules = [self.heads] + ([self.backbone] if self.backbone is not None else [])
        return [param for module in modules for param in module.parameters()]

    def _target_parameters(self) -> list[torch.nn.Parameter]:
        modules = [self.target_heads] + ([self.target_backbone] if self.target_backbone is not None else [])
        return [param for module in modules for param in module.parameters()]

    # -- features ---------------------------------------------------------------------------

    def _hidden(self, trajectories: list[Trajectory], *, target: bool) -> torch.Tensor:
        """[U, max L, H] last hidden states (grad flows only into an online separate backbone)."""
        inputs = padded_inputs(trajectories, self.device)
        if self.backbone is not None:
            module = self.target_backbone if target else self.backbone
            with torch.set_grad_enabled(torch.is_grad_enabled() and not target):
                return module(**inputs, use_cache=False).last_hidden_state
        return self._policy_hidden(inputs)

    @torch.no_grad()
    def _policy_hidden(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The policy's last hidden states, read without gradient and in eval mode (no dropout
        noise in the features); the policy's training flag is put back afterwards."""
        was_training = self.policy_module.training
        self.policy_module.eval()
        try:
            output = self.policy_module(**inputs, output_hidden_states=True, logits_to_keep=1, use_cache=False)
        finally:
            self.policy_module.train(was_training)
        return output.hidden_states[-1].detach()

    def _chunks(self, count: int) -> Iterator[range]:
        for start in range(0, count, self.micro_batch_size):
            yield range(start, min(start + self.micro_batch_size, count))

    # -- the role's methods -----------------------------------------------------------------

    @dispatch(ALL)
    def observe(self, batch: Batch) -> int:
        """Push this step's trajectories into the replay buffer; returns the turns it holds."""
        self.buffer.push(trajectories_from_batch(batch, bootstrap_truncated=self.bootstrap_truncated))
        return self.buffer.num_turns

    @dispatch(ALL)
    def update(self, num_updates: int, batch_size: int) -> dict[str, float]:
        """`num_updates` TD steps, each on `batch_size` turns drawn from the buffer and each
        followed by a soft update of the target networks. Metrics (means over the steps) are
        prefixed `archer/`."""
        totals: dict[str, float] = {}
        for _ in range(num_updates):
            for key, value in self._td_step(batch_size).items():
                totals[key] = totals.get(key, 0.0) + value / num_updates
        totals["buffer_turns"] = float(self.buffer.num_turns)
        return {f"archer/{key}": value for key, value in totals.items()}

    def _td_step(self, batch_size: int) -> dict[str, float]:
        sample = self.buffer.sample(batch_size)
        self.heads.train()
        self.optimizer.zero_grad(set_to_none=True)
        sums = {"q_loss": 0.0, "v_loss": 0.0, "q_mean": 0.0, "v_mean": 0.0, "target_mean": 0.0, "td_error_abs": 0.0}
        for chunk in self._chunks(len(sample.trajectories)):
            picked = (sample.rows >= chunk.start) & (sample.rows < chunk.stop)
            if not picked.any():
                continue
            weight = float(picked.sum()) / len(sample.rows)
            losses, stats = self._chunk_losses([sample.trajectories[i] for i in chunk], sample.rows[picked] - chunk.start, sample.turns[picked])
            ((losses.q_loss + losses.v_loss) * weight).backward()
            for key, value in stats.items():
                sums[key] += value * weight
        grad_norm = torch.nn.utils.clip_grad_norm_(self._online_parameters(), MAX_GRAD_NORM)
        self.optimizer.step()
        soft_update_(self._target_parameters(), self._online_parameters(), self.tau)
        self.updates += 1
        return {**sums, "grad_norm": float(grad_norm)}

    def _chunk_losses(self, trajectories: list[Trajectory], rows: torch.Tensor, turns: torch.Tensor):
        """The critic losses of the sampled turns (`rows` index `trajectories`, `turns` their
        turn), and their metrics as plain floats."""
        positions = _turn_positions(trajectories, rows, turns, self.device)
        rewards = torch.stack([trajectories[r].turn_rewards[t] for r, t in zip(rows.tolist(), turns.tolist())]).to(self.device)
        terminal = torch.stack([trajectories[r].terminal_turns()[t] for r, t in zip(rows.tolist(), turns.tolist())]).to(self.device)
        rows = rows.to(self.device)
        online = self._hidden(trajectories, target=False)
        q1, q2, _ = self.heads(online[rows, positions["q"]])
        _, _, v = self.heads(online[rows, positions["v"]])
        with torch.no_grad():
            frozen = self._hidden(trajectories, target=True) if self.backbone is not None else online.detach()
            target_q1, target_q2, _ = self.target_heads(frozen[rows, positions["q"]])
            _, _, next_values = self.target_heads(frozen[rows, positions["next"]])
            y = q_targets(rewards, next_values, terminal, self.gamma)
        losses = critic_losses(q1, q2, v, y, v_targets(target_q1, target_q2))
        stats = {"q_loss": losses.q_loss.item(), "v_loss": losses.v_loss.item(), "q_mean": torch.minimum(q1, q2).mean().item(),
                 "v_mean": v.mean().item(), "target_mean": y.mean().item(), "td_error_abs": losses.td_error.abs().mean().item()}
        return losses, stats

    @dispatch(ALL)
    @torch.no_grad()
    def turn_values(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q [B, K], V [B, K]) float32 of each turn of the batch from the online heads:
        min(Q1, Q2)(s_k, a_k) and V(s_k), 0 where `turn_mask` is 0. Taking the smaller Q head is
        the same pessimism the V target uses, so a turn is not credited for one head's
        over-estimate."""
        q_values = torch.zeros(batch["turn_mask"].shape, dtype=torch.float32)
        v_values = torch.zeros_like(q_values)
        trajectories = trajectories_from_batch(batch)  # positions only: which turns end an episode does not matter here
        batch_rows = [row for row in range(len(batch)) if int(batch["num_turns"][row]) > 0]
        self.heads.eval()
        for chunk in self._chunks(len(trajectories)):
            part = [trajectories[i] for i in chunk]
            rows = torch.cat([torch.full((t.num_turns,), i, dtype=torch.long) for i, t in enumerate(part)])
            turns = torch.cat([torch.arange(t.num_turns) for t in part])
            positions = _turn_positions(part, rows, turns, self.device)
            hidden = self._hidden(part, target=False)
            q1, q2, _ = self.heads(hidden[rows.to(self.device), positions["q"]])
            _, _, v = self.heads(hidden[rows.to(self.device), positions["v"]])
            q, v = torch.minimum(q1, q2).cpu(), v.cpu()
            for local, row in enumerate(chunk):
                q_values[batch_rows[row], : part[local].num_turns] = q[rows == local]
                v_values[batch_rows[row], : part[local].num_turns] = v[rows == local]
        mask = batch["turn_mask"].float().cpu()
        return q_values * mask, v_values * mask

    @dispatch(ALL)
    @torch.no_grad()
    def turn_advantages(self, batch: Batch) -> torch.Tensor:
        """[B, K] float32 advantage of each turn, Q(s_k, a_k) − V(s_k) of :meth:`turn_values`
        (0 where `turn_mask` is 0)."""
        return utterance_advantages(*self.turn_values(batch))

    @dispatch(RANK_ZERO)
    def state_dict(self) -> dict:
        """Heads, targets, the backbone and its target (when separate), the optimiser and the
        replay buffer. Tensors are the live ones: save (or copy) before the next update."""
        state = {"heads": self.heads.state_dict(), "target_heads": self.target_heads.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "buffer": self.buffer.state_dict(), "updates": self.updates}
        if self.backbone is not None:
            state["backbone"] = self.backbone.state_dict()
            state["target_backbone"] = self.target_backbone.state_dict()
        return state

    @dispatch(ALL)
    def load_state_dict(self, state: dict) -> None:
        saved = "separate" if "backbone" in state else "policy"
        mine = "separate" if self.backbone is not None else "policy"
        if saved != mine:
            raise ValueError(f"this checkpoint's utterance critic has the {saved!r} backbone; the run's has {mine!r} (algorithm.archer.backbone)")
        self.heads.load_state_dict(state["heads"])
        self.target_heads.load_state_dict(state["target_heads"])
        if self.backbone is not None:
            self.backbone.load_state_dict(state["backbone"])
            self.target_backbone.load_state_dict(state["target_backbone"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.updates = int(state["updates"])


def _turn_positions(trajectories: list[Trajectory], rows: torch.Tensor, turns: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """Token positions [n] of V(s_k) ('v'), Q(s_k, a_k) ('q') and V̄(s_{k+1}) ('next') of the
    turns (`rows` index `trajectories`, `turns` the turn in each)."""
    pairs = list(zip(rows.tolist(), turns.tolist()))
    reads = {
        "v": [trajectories[r].value_positions()[t] for r, t in pairs],
        "q": [trajectories[r].q_positions()[t] for r, t in pairs],
        "next": [trajectories[r].next_positions()[t] for r, t in pairs],
    }
    return {key: torch.stack(values).to(device) for key, values in reads.items()}


def build_utterance_critic(archer: ArcherConfig, *, policy_module: torch.nn.Module | None = None, backbone: torch.nn.Module | None = None,
                           device: torch.device | str, seed: int, gamma: float, micro_batch_size: int = 8) -> UtteranceCritic:
    """The utterance critic of `algorithm.archer`: reads `backbone`, `buffer_size`, `tau`,
    `critic_lr` and `bootstrap_truncated` (the loop reads `critic_updates`, `critic_batch_size` and `warmup_steps`).

    Args:
        policy_module: the policy's causal LM (its `nn.Module`), needed by backbone 'policy'.
        backbone: the transformers base model (no LM head) of a 'separate' critic, which the
            critic then owns and trains (see :func:`rlhf.workers.build.separate_archer_backbone`).
        seed: initialises the heads and the replay buffer's generator.
        gamma: discount over turns (`algorithm.turn_gamma`).
        micro_batch_size: trajectories per forward.
    """
    if archer.backbone not in BACKBONES:
        raise ConfigError(f"algorithm.archer.backbone: unknown backbone {archer.backbone!r}; valid: {', '.join(BACKBONES)}")
    buffer = ReplayBuffer(archer.buffer_size, seed=seed + 2)
    options = dict(gamma=gamma, tau=archer.tau, lr=archer.critic_lr, device=torch.device(device), micro_batch_size=micro_batch_size,
                   bootstrap_truncated=archer.bootstrap_truncated)
    if archer.backbone == "policy":
        if policy_module is None:
            raise ValueError("build_utterance_critic: backbone 'policy' needs the policy module")
        return UtteranceCritic(UtteranceHeads(policy_module.config.hidden_size, seed), buffer, policy_module=policy_module, **options)
    if backbone is None:
        raise ValueError("build_utterance_critic: backbone 'separate' needs the critic's backbone module")
    return UtteranceCritic(UtteranceHeads(backbone.config.hidden_size, seed), buffer, backbone=backbone, **options)


def load_backbone(path: str) -> torch.nn.Module:
    """The transformers base model (no LM head) at `path` (`critic.path`), in float32."""
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as error:
        raise ConfigError(f"critic.path: cannot load the ArCHer critic's backbone ('separate') from {path!r}: {type(error).__name__}: {error}") from None
