"""LoRA on the policy through PEFT (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large
Language Models").

With `model.lora.rank` r > 0 every targeted linear layer of the actor computes
W x + (alpha / r) · B A x, where W stays frozen and only A [r, in] and B [out, r] are trained
(B starts at zero, so the adapted model starts as the base model). What leaves the trainer:

* weight sync: merged tensors W + (alpha / r) · B A under the *base* model's parameter names,
  computed one layer at a time from the engine's stream of named weights, so the trainer's
  module is never merged in place and a ZeRO-3 model is still gathered bucket by bucket;
* checkpoints: the adapter tensors (and their optimiser state), not the frozen base;
* export: the merged model, a plain Hugging Face checkpoint that loads without PEFT.

PEFT is imported only here, and only when LoRA is on (``is_lora_model`` never imports it).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from rlhf.config.errors import ConfigError
from rlhf.config.schema import LoRAConfig

log = logging.getLogger(__name__)

Named = tuple[str, torch.Tensor]

ADAPTER = "default"
"""PEFT's name of the one adapter we train."""

WRAPPER_PREFIX = "base_model.model."
"""What PeftModel puts before every parameter name of the model it wraps."""

ALL_LINEAR = "all-linear"
"""`model.lora.target_modules: [all-linear]`: every linear layer but the output head."""


def import_peft():
    """The peft module, or an ImportError naming what to install."""
    try:
        import peft
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("model.lora needs PEFT: pip install peft") from error
    return peft


def is_lora_model(module: torch.nn.Module) -> bool:
    """True when `module` is a PeftModel (without importing PEFT: no import, no PeftModel)."""
    peft = sys.modules.get("peft")
    return peft is not None and isinstance(module, peft.PeftModel)


def base_module(module: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model inside a PeftModel (its layers carry the adapters), else `module`."""
    return module.get_base_model() if is_lora_model(module) else module


def linear_module_names(model: torch.nn.Module) -> list[str]:
    """The distinct last name parts of the model's linear layers ('q_proj', 'lm_head', ...)."""
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)})


def check_target_modules(model: torch.nn.Module, targets: list[str]) -> None:
    """Every entry of `model.lora.target_modules` must name (a dotted suffix of) a linear layer."""
    if targets == [ALL_LINEAR]:
        return
    linear = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    unmatched = [target for target in targets if not any(name == target or name.endswith("." + target) for name in linear)]
    if unmatched or not targets:
        raise ConfigError(
            f"model.lora.target_modules: {unmatched or targets} match no linear layer of the model "
            f"(its linear layers: {', '.join(linear_module_names(model))}; or use [{ALL_LINEAR}])"
        )


def apply_lora(model: torch.nn.Module, lora: LoRAConfig) -> torch.nn.Module:
    """Wrap `model` in a PeftModel with one trainable adapter; everything else is frozen.

    PEFT replaces the targeted layers *inside* `model`, so whoever holds `model` (the
    colocated HF rollout engine) generates with the adapter from then on."""
    check_target_modules(model, lora.target_modules)
    peft = import_peft()
    targets = ALL_LINEAR if lora.target_modules == [ALL_LINEAR] else list(lora.target_modules)
    config = peft.LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, bias="none", task_type="CAUSAL_LM")
    wrapped = peft.get_peft_model(model, config, adapter_name=ADAPTER)
    trainable, total = trainable_share(wrapped)
    log.info("LoRA rank %d on %s: %d of %d parameters trainable (%.2f%%)", lora.rank, targets, trainable, total, 100 * trainable / total)
    return wrapped


def trainable_share(module: torch.nn.Module) -> tuple[int, int]:
    """(trainable parameters, all parameters) of `module` (ZeRO-3 counts from `ds_numel`)."""
    sizes = [(getattr(param, "ds_numel", param.numel()), param.requires_grad) for param in module.parameters()]
    return sum(size for size, trainable in sizes if trainable), sum(size for size, _ in sizes)


def merge_plan(module: torch.nn.Module) -> dict[str, tuple[float, bool]]:
    """{base name of a LoRA layer ('model.layers.0.self_attn.q_proj'): (alpha / r, fan_in_fan_out)}."""
    peft = import_peft()
    plan = {}
    for name, layer in base_module(module).named_modules():
        if isinstance(layer, peft.tuners.lora.LoraLayer) and ADAPTER in layer.lora_A:
            plan[name] = (float(layer.scaling[ADAPTER]), bool(getattr(layer, "fan_in_fan_out", False)))
    return plan


def base_name(name: str) -> str:
    """A PEFT parameter name as the base model names it: no wrapper prefix, no `.base_layer`."""
    return name.removeprefix(WRAPPER_PREFIX).replace(".base_layer.", ".")


def merged_named_weights(module: torch.nn.Module, named: Iterable[Named]) -> Iterator[Named]:
    """The policy's weights as the base model names them, adapters merged: W + (alpha / r) · B A.

    `named` is the engine's stream of `module`'s parameters (PEFT names, full tensors; under
    ZeRO-3 gathered in buckets). A LoRA layer's W, A and B arrive in this order, possibly in
    different buckets: W waits (one layer at a time) until its A and B have come. New tensors
    are yielded; the trainer's own are never changed. Without adapters `named` passes through.
    """
    if not is_lora_model(module):
        yield from named
        return
    plan = merge_plan(module)
    waiting: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in named:
        name = base_name(name)
        layer, part = _lora_part(name, plan)
        if layer is None:
            yield name, tensor
            continue
        parts = waiting.setdefault(layer, {})
        parts[part] = tensor
        if len(parts) == 3:
            del waiting[layer]
            yield f"{layer}.weight", merge_layer(parts["weight"], parts["A"], parts["B"], *plan[layer])
    if waiting:
        raise RuntimeError(f"LoRA layers without all of W, A and B in the weight stream: {sorted(waiting)[:3]}")


def _lora_part(name: str, plan: dict[str, tuple[float, bool]]) -> tuple[str | None, str]:
    """(LoRA layer, 'weight' | 'A' | 'B') for the tensors a merge needs; (None, '') otherwise."""
    for part, suffix in (("weight", ".weight"), ("A", f".lora_A.{ADAPTER}.weight"), ("B", f".lora_B.{ADAPTER}.weight")):
        if name.endswith(suffix) and name[: -len(suffix)] in plan:
            return name[: -len(suffix)], part
    return None, ""


def merge_layer(weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float, fan_in_fan_out: bool = False) -> torch.Tensor:
    """W + scaling · B A (transposed for layers that store W as [in, out]), as PEFT merges it.

    Args:
        weight: [out, in] (or [in, out] with `fan_in_fan_out`).
        lora_a: [r, in]; lora_b: [out, r].
    """
    delta = lora_b @ lora_a
    return weight + (delta.T if fan_in_fan_out else delta) * scaling


def adapter_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors of a PeftModel under its own parameter names (what checkpoints keep)."""
    return {name: param.detach().clone() for name, param in module.named_parameters() if ".lora_" in name}


def load_adapter_state_dict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` (from :func:`adapter_state_dict`) into `module`'s adapters; every adapter
    tensor must be covered and nothing else given."""
    expected = {name for name, _ in module.named_parameters() if ".lora_" in name}
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        raise RuntimeError(f"{source}: the LoRA adapter does not match model.lora (missing {missing[:3]}, unexpected {unexpected[:3]})")
    module.load_state_dict(state, strict=False)


def shares_base_as_reference(model_lora: LoRAConfig, ref_path: str, anchor_moves: bool) -> bool:
    """True when the reference can be the actor's own model with its adapter switched off: LoRA
    is on, the reference is the initial policy (no `ref.path`) and no dynamic anchor moves it."""
    return model_lora.rank > 0 and not ref_path and not anchor_moves


def save_or_restore_base(model: torch.nn.Module, tokenizer, directory: Path, resumed: bool) -> None:
    """Keep a trained base model on disk for adapter-only checkpoints (the SFT warm start).

    A fresh run saves `model` to `directory`; a resumed one (which skipped the warm start)
    loads its weights back from there."""
    if not resumed:
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        return
    if not (directory / "config.json").exists():
        raise RuntimeError(f"cannot resume a LoRA run with sft.enabled: its SFT base model {directory} is missing")
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    model.load_state_dict(saved.state_dict())


def checkpoint_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What an engine checkpoint keeps of `module`: its adapters under LoRA (the frozen base
    comes back from the model it was loaded from), else its whole state dict."""
    return adapter_state_dict(module) if is_lora_model(module) else module.state_dict()


def load_checkpoint_state(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Restore what :func:`checkpoint_state` returned."""
    if is_lora_model(module):
        load_adapter_state_dict(module, state, source)
    else:
        module.load_state_dict(state)
