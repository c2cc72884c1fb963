"""KL(policy || reference) estimators from sampled tokens (Schulman, "Approximating KL
divergence", 2020), and the controllers that set the KL penalty coefficient β.

Notation: B sequences, R response tokens; inputs are [B, R] log-probabilities of the sampled
tokens under the policy (`logprobs`) and the reference (`ref_logprobs`).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch


def _k1(log_ratio: torch.Tensor) -> torch.Tensor:
    return log_ratio


def _abs(log_ratio: torch.Tensor) -> torch.Tensor:
    return log_ratio.abs()


def _k2(log_ratio: torch.Tensor) -> torch.Tensor:
    return 0.5 * log_ratio.square()


def _k3(log_ratio: torch.Tensor) -> torch.Tensor:
    # With r = ref - lp: exp(r) - r - 1 >= 0, unbiased, low variance. Clamps keep it finite.
    ref_minus_lp = (-log_ratio).clamp(-20.0, 20.0)
    return (ref_minus_lp.exp() - ref_minus_lp - 1).clamp(-10.0, 10.0)


KL_ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "k1": _k1,
    "abs": _abs,
    "k2": _k2,
    "k3": _k3,
    "low_var_kl": _k3,
}
"""Estimator name -> function of the log-ratio lp - ref."""


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token KL estimate [B, R].

    k1 = lp − ref (unbiased, high variance, can be negative); abs = |lp − ref|;
    k2 = ½(lp − ref)²; k3 (alias low_var_kl) = exp(ref − lp) − (ref − lp) − 1, with the
    exponent's input clamped to ±20 and the result to ±10.
    """
    try:
        estimator = KL_ESTIMATORS[kind]
    except KeyError:
        raise ValueError(f"unknown KL estimator {kind!r}; valid: {', '.join(KL_ESTIMATORS)}") from None
    return estimator(logprobs - ref_logprobs)


# ---- KL coefficient controllers ------------------------------------------------------------
# Unlike the estimators above these are not tensor math: β is one Python float of trainer state,
# updated once per step from a logged KL value, and checkpointed with the trainer. Callers pass
# plain floats (a tensor's `.item()` belongs in the trainer, not here).


class KLController(Protocol):
    """Holds the current KL penalty coefficient β in `value`."""

    value: float

    def update(self, current_kl: float, n_steps: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class FixedKLController:
    """A constant β."""

    def __init__(self, coef: float) -> None:
        self.value = float(coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Does nothing: β stays fixed."""

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController:
    """β steered so that the measured KL tracks a target.

    Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences", sec. 2.2:
    e = clip(KL / KL_target − 1, −0.2, 0.2) and β ← β · (1 + K_β · e), where the paper's gain
    K_β is written here, as in the authors' released code, as n_steps / horizon: n_steps is
    the number of samples (or steps) since the last update. The clip keeps one outlying KL
    from moving β by more than 20% per horizon.

    `state_dict` holds only β: the target and horizon are configuration, so a resumed run
    takes them from its config.
    """

    def __init__(self, init_coef: float, target: float, horizon: float) -> None:
        if not target > 0:
            raise ValueError(f"adaptive KL controller needs target > 0, got {target}")
        if not horizon > 0:
            raise ValueError(f"adaptive KL controller needs horizon > 0, got {horizon}")
        self.value = float(init_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Move β by the clipped relative KL error, scaled by n_steps / horizon."""
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])
