"""The learning-rate schedule and the plain-PyTorch training engine, on a 2-weight model."""

import math

import pytest
import torch

from rlhf.engines.base import OptimConfig, lr_multiplier
from rlhf.engines.torch_engine import TorchEngine

# ---- lr_multiplier -----------------------------------------------------------------------


def test_linear_warmup_then_constant():
    values = [lr_multiplier(step, 4, 100, "constant") for step in range(6)]
    assert values == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_no_warmup_constant():
    assert [lr_multiplier(step, 0, 10, "constant") for step in (0, 5, 50)] == [1.0, 1.0, 1.0]


def test_cosine_endpoints_and_midpoint():
    assert lr_multiplier(0, 0, 10, "cosine") == pytest.approx(1.0)
    assert lr_multiplier(5, 0, 10, "cosine") == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_multiplier(10, 0, 10, "cosine") == pytest.approx(0.1)
    assert lr_multiplier(25, 0, 10, "cosine") == pytest.approx(0.1)  # stays at the floor


def test_cosine_after_warmup():
    assert lr_multiplier(1, 2, 12, "cosine") == pytest.approx(1.0)  # last warm-up step
    assert lr_multiplier(2, 2, 12, "cosine") == pytest.approx(1.0)  # cosine starts at 1
    assert lr_multiplier(7, 2, 12, "cosine") == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 2)))
    assert lr_multiplier(12, 2, 12, "cosine") == pytest.approx(0.1)


def test_unknown_schedule():
    with pytest.raises(ValueError, match="unknown lr schedule 'linear'.*constant, cosine"):
        lr_multiplier(0, 0, 10, "linear")


# ---- TorchEngine -------------------------------------------------------------------------


def two_weight_model() -> torch.nn.Linear:
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
    return model


def square_loss(model: torch.nn.Module) -> torch.Tensor:
    # (w . [1, 1])^2 = 9 at w = [1, 2]; gradient 2 * 3 * [1, 1] = [6, 6], norm 6 sqrt(2)
    return model(torch.tensor([[1.0, 1.0]])).square().sum()


def test_step_changes_weights_and_returns_grad_norm():
    model = two_weight_model()
    engine = TorchEngine(model, OptimConfig(lr=0.01, grad_clip=0.0))
    engine.backward(square_loss(model))
    grad_norm = engine.step()
    assert grad_norm.item() == pytest.approx(6 * math.sqrt(2))
    # Adam's first step moves each weight by lr against the sign of its gradient
    assert model.weight.detach()[0].tolist() == pytest.approx([0.99, 1.99], abs=1e-6)
    assert model.weight.grad is None  # zeroed after the step


def test_clipping_scales_the_gradient_the_optimiser_sees():
    model = two_weight_model()
    engine = TorchEngine(model, OptimConfig(lr=0.01, grad_clip=1.0))
    engine.backward(square_loss(model))
    grad_norm = engine.step()
    assert grad_norm.item() == pytest.approx(6 * math.sqrt(2))  # the norm before clipping
    first_moment = engine.optimizer.state[model.weight]["exp_avg"]
    # exp_avg = (1 - beta1) * clipped gradient = 0.1 * [6, 6] / (6 sqrt 2)
    assert first_moment[0].tolist() == pytest.approx([0.1 / math.sqrt(2)] * 2, rel=1e-5)


def test_no_clipping_when_disabled():
    model = two_weight_model()
    engine = TorchEngine(model, OptimConfig(lr=0.01, grad_clip=0.0))
    engine.backward(square_loss(model))
    engine.step()
    assert engine.optimizer.state[model.weight]["exp_avg"][0].tolist() == pytest.approx([0.6, 0.6])


def test_gradients_accumulate_over_backward_calls():
    model = two_weight_model()
    engine = TorchEngine(model, OptimConfig(lr=0.01, grad_clip=0.0))
    engine.backward(square_loss(model))
    engine.backward(square_loss(model))
    assert engine.step().item() == pytest.approx(12 * math.sqrt(2))


def test_lr_follows_warmup_schedule():
    model = two_weight_model()
    engine = TorchEngine(model, OptimConfig(lr=0.1, warmup_steps=2, total_steps=10))
    observed = [engine.lr]
    for _ in range(3):
        engine.backward(square_loss(model))
        engine.step()
        observed.append(engine.lr)
    assert observed == pytest.approx([0.05, 0.1, 0.1, 0.1])


def test_weight_decay_and_betas_reach_the_optimiser():
    engine = TorchEngine(two_weight_model(), OptimConfig(lr=0.1, betas=(0.5, 0.9), weight_decay=0.01))
    group = engine.optimizer.param_groups[0]
    assert group["betas"] == (0.5, 0.9) and group["weight_decay"] == 0.01


def test_frozen_parameters_are_not_optimised():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].weight.requires_grad_(False)
    engine = TorchEngine(model, OptimConfig(lr=0.1))
    optimised = {id(p) for group in engine.optimizer.param_groups for p in group["params"]}
    assert id(model[0].weight) not in optimised and id(model[1].weight) in optimised


def test_named_weights_are_the_detached_parameters():
    model = two_weight_model()
    engine = TorchEngine(model, OptimConfig(lr=0.1))
    weights = dict(engine.named_weights())
    assert list(weights) == ["weight"]
    assert not weights["weight"].requires_grad
    assert weights["weight"].data_ptr() == model.weight.data_ptr()  # no copy


def test_autocast():
    model = two_weight_model()
    with TorchEngine(model, OptimConfig(lr=0.1)).autocast():
        assert model(torch.ones(1, 2)).dtype == torch.float32
    with TorchEngine(model, OptimConfig(lr=0.1), autocast_dtype=torch.bfloat16).autocast():
        assert model(torch.ones(1, 2)).dtype == torch.bfloat16
    assert model.weight.dtype == torch.float32
