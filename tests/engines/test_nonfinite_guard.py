"""The engines' non-finite guard (`rlhf.engines.guards`): a NaN or inf loss, or a gradient that
overflows, skips the optimiser step and leaves weights, AdamW moments and the learning-rate
schedule untouched; the next finite step trains normally. Torch engine and DeepSpeed ZeRO 0-3
(one gloo rank on CPU)."""

from __future__ import annotations

import copy

import pytest
import torch

from rlhf.engines.base import OptimConfig
from rlhf.engines.guards import is_finite, poison_if_nonfinite
from rlhf.engines.torch_engine import TorchEngine

OPTIM = OptimConfig(lr=1e-2, warmup_steps=2, total_steps=10, grad_clip=1.0)


def test_poisoning_keeps_finite_gradients_exact_and_spreads_nan_otherwise():
    weight = torch.tensor([1.0, -2.0], requires_grad=True)
    poison_if_nonfinite((weight**2).sum()).backward()
    assert torch.equal(weight.grad, torch.tensor([2.0, -4.0]))
    for bad in (float("inf"), float("nan")):
        weight.grad = None
        loss = (weight**2).sum() + torch.tensor(bad)  # d(loss)/d(weight) alone would be finite
        poison_if_nonfinite(loss).backward()
        assert torch.isnan(weight.grad).all(), bad
    assert is_finite(torch.tensor(3.0)) and not is_finite(torch.tensor(float("inf"))) and not is_finite(float("nan"))


def tiny_module() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def loss_of(module: torch.nn.Module, poison: float | None = None) -> torch.Tensor:
    inputs = torch.linspace(-1, 1, 12).reshape(3, 4).to(next(module.parameters()).device)
    loss = module(inputs).pow(2).mean()
    return loss * poison if poison is not None else loss


def snapshot(engine) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in engine.named_weights()}


def assert_guarded(engine) -> None:
    """One good step, then NaN and inf losses are skipped without a trace, then one good step
    again moves the weights as the second step of an unbroken run would."""
    engine.backward(loss_of(engine.module))
    assert is_finite(engine.step())
    before, lr = snapshot(engine), engine.lr
    for poison in (float("nan"), float("inf")):
        engine.backward(loss_of(engine.module))  # a good micro-batch, then a bad one
        engine.backward(loss_of(engine.module, poison))
        assert not is_finite(engine.step())
        after = snapshot(engine)
        assert all(torch.equal(after[name], before[name]) for name in before), poison
        assert engine.lr == lr  # the schedule did not advance
    engine.backward(loss_of(engine.module))
    assert is_finite(engine.step())
    return snapshot(engine)


def unbroken_two_steps(make_engine) -> dict[str, torch.Tensor]:
    engine = make_engine(tiny_module())
    for _ in range(2):
        engine.backward(loss_of(engine.module))
        engine.step()
    return snapshot(engine)


def test_torch_engine_skips_nonfinite_steps():
    make = lambda module: TorchEngine(module, OPTIM)  # noqa: E731
    guarded = assert_guarded(make(tiny_module()))
    expected = unbroken_two_steps(make)
    for name, tensor in expected.items():
        torch.testing.assert_close(guarded[name], tensor, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("zero_stage", [0, 1, 2, 3])
def test_deepspeed_engine_skips_nonfinite_steps(zero_stage):
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed")
    from rlhf.engines.deepspeed_engine import DeepSpeedEngine

    make = lambda module: DeepSpeedEngine(copy.deepcopy(module), OPTIM, zero_stage=zero_stage)  # noqa: E731
    guarded = assert_guarded(make(tiny_module()))
    expected = unbroken_two_steps(make)
    for name, tensor in expected.items():
        torch.testing.assert_close(guarded[name], tensor, rtol=1e-5, atol=1e-6)
