"""`model.param_dtype: bfloat16` in the torch engine: a bfloat16 module, float32 master weights
and AdamW state (:mod:`rlhf.engines.master_weights`), checked against float32 training.

Tolerances, for a few steps of the tiny model at lr 1e-3 (measured values in brackets):

* losses: relative 1e-2. bfloat16 keeps 8 significant bits (unit roundoff 2^-9 ≈ 2e-3), and
  the loss is a mean over many tokens, so its error stays near one roundoff [≤ 4e-4].
* float32 masters vs the float32 run's weights: the error of the whole update below 10% of the
  update, ‖masters − w₃₂‖ ≤ 0.1 ‖w₃₂ − w₀‖ [2.7%; float32 weights under bfloat16 autocast,
  today's bf16 path, give 2.4%]. Element-wise only Adam's own bound holds: it moves a weight by
  at most about lr per step, and a near-zero gradient whose sign bfloat16 flips moves it the
  other way, so |masters − w₃₂| ≤ 2 × (sum of the learning rates).
* the bfloat16 module equals its masters rounded to bfloat16, exactly, after every step.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from rlhf.engines.base import OptimConfig
from rlhf.engines.torch_engine import TorchEngine
from rlhf.models.tiny import build_tiny_model

BF16 = torch.bfloat16
OPTIM = OptimConfig(lr=1e-3, weight_decay=0.01, warmup_steps=2, lr_schedule="cosine", total_steps=4, grad_clip=1.0)
TOKENS = torch.randint(3, 20, (4, 12), generator=torch.Generator().manual_seed(0))
STEPS = 4


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def load(tiny_dir: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(tiny_dir)


def bf16_engine(module: torch.nn.Module, optim: OptimConfig = OPTIM) -> TorchEngine:
    return TorchEngine(module, optim, autocast_dtype=BF16, param_dtype=BF16)


def train(engine, steps: int, tokens: torch.Tensor = TOKENS) -> tuple[list[float], list[float]]:
    """`steps` optimiser steps over two micro-batches weighted 0.5 each (as the workers do);
    the micro-batch losses and the grad norms."""
    losses, norms = [], []
    half = len(tokens) // 2
    for _ in range(steps):
        for micro in (tokens[:half], tokens[half:]):
            with engine.autocast():
                loss = engine.module(input_ids=micro, labels=micro).loss
            engine.backward(0.5 * loss)
            losses.append(loss.item())
        norms.append(engine.step().item())
    return losses, norms


def trainable(engine) -> dict[str, torch.nn.Parameter]:
    return {name: param for name, param in engine.module.named_parameters() if param.requires_grad}


def masters(engine) -> dict[str, torch.Tensor]:
    return dict(zip(trainable(engine), engine.master.masters))


def assert_module_is_rounded_masters(engine) -> None:
    for (name, param), master in zip(trainable(engine).items(), engine.master.masters):
        assert param.dtype == BF16 and master.dtype == torch.float32, name
        assert torch.equal(param.detach(), master.detach().to(BF16)), name


def test_weights_are_bf16_masters_and_adamw_state_float32(tiny_dir: Path):
    reference, engine = TorchEngine(load(tiny_dir), OPTIM), bf16_engine(load(tiny_dir))
    initial = {name: param.detach().clone() for name, param in reference.module.named_parameters()}
    # the masters start from the exact float32 weights, the module from them rounded
    assert all(torch.equal(masters(engine)[name], initial[name]) for name in initial)
    assert_module_is_rounded_masters(engine)
    # buffers keep float32 (rotary frequencies rounded to bf16 would shift every position)
    assert {buffer.dtype for buffer in engine.module.buffers()} == {torch.float32}
    train(engine, 1)
    state = [engine.optimizer.state[master] for master in engine.master.masters]
    assert all(s["exp_avg"].dtype == s["exp_avg_sq"].dtype == torch.float32 for s in state)
    assert all(param.grad is None for param in engine.module.parameters())  # the bf16 gradients went into the masters'
    nbytes = lambda tensors: sum(t.numel() * t.element_size() for t in tensors)  # noqa: E731
    fp32_weights = nbytes(reference.module.parameters())
    assert nbytes(engine.module.parameters()) * 2 == fp32_weights  # the module's weights take half
    assert nbytes(engine.master.masters) == fp32_weights
    assert nbytes([s["exp_avg"] for s in state] + [s["exp_avg_sq"] for s in state]) == 2 * fp32_weights


def test_training_matches_float32_within_bf16_tolerance(tiny_dir: Path):
    initial = {name: param.detach().clone() for name, param in load(tiny_dir).named_parameters()}
    reference, engine = TorchEngine(load(tiny_dir), OPTIM), bf16_engine(load(tiny_dir))
    expected_losses, expected_norms = train(reference, STEPS)
    losses, norms = [], []
    for _ in range(STEPS):  # step by step: the module must be the rounded masters after each
        step_losses, step_norms = train(engine, 1)
        losses += step_losses
        norms += step_norms
        assert_module_is_rounded_masters(engine)
    assert losses == pytest.approx(expected_losses, rel=1e-2)
    assert norms == pytest.approx(expected_norms, rel=2e-2)
    weights = dict(reference.module.named_parameters())
    update = math.sqrt(sum(float(((weights[name].detach() - initial[name]) ** 2).sum()) for name in weights))
    error = math.sqrt(sum(float(((master.detach() - weights[name].detach()) ** 2).sum()) for name, master in masters(engine).items()))
    assert 0 < error <= 0.1 * update
    lr_sum = OPTIM.lr * (0.5 + 1.0 + 1.0 + 1.0)  # warm-up 0.5, 1; cosine from 1 (an upper bound)
    for name, master in masters(engine).items():
        assert (master.detach() - weights[name].detach()).abs().max() <= 2 * lr_sum, name


def bf16_gradients(module: torch.nn.Module, micro: torch.Tensor) -> list[torch.Tensor]:
    """The bf16 gradients of one micro-batch's weighted loss, through a copy of `module`."""
    twin = copy.deepcopy(module)
    with torch.autocast("cpu", dtype=BF16):
        loss = twin(input_ids=micro, labels=micro).loss
    (0.5 * loss).backward()
    return [param.grad for param in twin.parameters() if param.requires_grad]


def test_micro_batches_accumulate_and_clip_in_float32(tiny_dir: Path):
    """Each backward's bf16 gradient is added into a float32 master gradient; the norm and the
    clipping that AdamW sees are those of the float32 sums."""
    engine = bf16_engine(load(tiny_dir), OptimConfig(lr=1e-3, grad_clip=0.5))
    micro_grads = [bf16_gradients(engine.module, micro) for micro in (TOKENS[:2], TOKENS[2:])]
    for micro in (TOKENS[:2], TOKENS[2:]):
        with engine.autocast():
            loss = engine.module(input_ids=micro, labels=micro).loss
        engine.backward(0.5 * loss)
    grads = [m.grad.clone() for m in engine.master.masters]
    for grad, first, second in zip(grads, *micro_grads):
        assert first.dtype == BF16 and grad.dtype == torch.float32
        assert torch.equal(grad, first.float() + second.float())
    # so the sum keeps digits a bf16 accumulation would round away
    assert any(not torch.equal(grad, grad.to(BF16).float()) for grad in grads)
    expected_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    grad_norm = engine.step()
    assert grad_norm.dtype == torch.float32 and grad_norm.item() == pytest.approx(expected_norm.item(), rel=1e-6)
    assert grad_norm.item() > 0.5  # so clipping scaled the gradient
    scale = 0.5 / (expected_norm.item() + 1e-6)  # clip_grad_norm_'s factor
    for master, grad in zip(engine.master.masters, grads):
        # AdamW's first moment after one step: (1 - beta1) × the clipped float32 gradient
        torch.testing.assert_close(engine.optimizer.state[master]["exp_avg"], 0.1 * grad * scale, rtol=1e-5, atol=1e-12)


def test_resume_is_bitwise_exact(tiny_dir: Path, tmp_path: Path):
    """save → load into a fresh engine → step equals an uninterrupted run, bit for bit."""
    whole = bf16_engine(load(tiny_dir))
    expected = train(whole, 4)
    first = bf16_engine(load(tiny_dir))
    losses = train(first, 2)
    first.save_checkpoint(tmp_path)
    resumed = bf16_engine(load(tiny_dir))
    resumed.load_checkpoint(tmp_path)
    assert_module_is_rounded_masters(resumed)
    later = train(resumed, 2)
    assert (losses[0] + later[0], losses[1] + later[1]) == expected
    for name, param in whole.module.state_dict().items():
        assert torch.equal(resumed.module.state_dict()[name], param), name
    for master, expected_master in zip(resumed.master.masters, whole.master.masters):
        assert torch.equal(master, expected_master)
        for key, value in whole.optimizer.state[expected_master].items():
            assert torch.equal(resumed.optimizer.state[master][key], value), key
    assert resumed.lr == whole.lr


def test_a_float32_checkpoint_is_refused(tiny_dir: Path, tmp_path: Path):
    TorchEngine(load(tiny_dir), OPTIM).save_checkpoint(tmp_path)
    with pytest.raises(RuntimeError, match="without master copies.*model.param_dtype=float32"):
        bf16_engine(load(tiny_dir)).load_checkpoint(tmp_path)


def test_a_nonfinite_step_leaves_masters_and_module(tiny_dir: Path):
    engine = bf16_engine(load(tiny_dir))
    train(engine, 1)
    before = [m.detach().clone() for m in engine.master.masters]
    with engine.autocast():
        loss = engine.module(input_ids=TOKENS, labels=TOKENS).loss
    engine.backward(loss * float("nan"))
    assert not torch.isfinite(engine.step())
    assert all(torch.equal(m, b) for m, b in zip(engine.master.masters, before))
    assert all(m.grad is None for m in engine.master.masters)
    assert_module_is_rounded_masters(engine)


def test_named_weights_are_the_bf16_module_itself(tiny_dir: Path):
    engine = bf16_engine(load(tiny_dir))
    named = dict(engine.named_weights())
    assert {tensor.dtype for tensor in named.values()} == {BF16}
    assert all(named[name].data_ptr() == param.data_ptr() for name, param in engine.module.named_parameters())


def test_lora_trains_bf16_base_and_adapters_with_float32_adapter_masters(tiny_dir: Path, tmp_path: Path):
    from rlhf.config.schema import LoRAConfig
    from rlhf.models.lora import apply_lora

    def lora_model() -> torch.nn.Module:
        torch.manual_seed(0)  # PEFT draws the A matrices from the global generator
        return apply_lora(load(tiny_dir), LoRAConfig(rank=4, alpha=8.0))

    optim = OptimConfig(lr=1e-3, grad_clip=1.0)
    reference, engine = TorchEngine(lora_model(), optim), bf16_engine(lora_model(), optim)
    assert {param.dtype for param in engine.module.parameters()} == {BF16}  # the frozen base too
    assert set(masters(engine)) == {name for name in trainable(engine) if ".lora_" in name}  # masters of the adapters only
    initial = {name: master.detach().clone() for name, master in masters(engine).items()}
    expected_losses, _ = train(reference, STEPS)
    losses, _ = train(engine, STEPS)
    assert losses == pytest.approx(expected_losses, rel=1e-2)
    assert_module_is_rounded_masters(engine)
    adapters = dict(trainable(reference))
    update = math.sqrt(sum(float(((adapters[name].detach() - initial[name]) ** 2).sum()) for name in initial))
    error = math.sqrt(sum(float(((master.detach() - adapters[name].detach()) ** 2).sum()) for name, master in masters(engine).items()))
    assert 0 < error <= 0.1 * update
    engine.save_checkpoint(tmp_path)  # adapters and their masters only
    resumed = bf16_engine(lora_model(), optim)
    resumed.load_checkpoint(tmp_path)
    assert train(resumed, 1) == train(engine, 1)
    assert all(torch.equal(a, b) for a, b in zip(resumed.master.masters, engine.master.masters))
