"""`rlhf export RUN [--step S] OUT`: a run's policy as a plain Hugging Face model directory
(safetensors weights, config, generation config, tokenizer) that transformers and vLLM load.

The architecture and tokenizer come from the run's own model (`config.yaml` of the run:
`model.path`, or `init_model/` for a tiny model); the weights from the actor of a checkpoint:
the torch engine's `engine.pt`, or DeepSpeed's sharded checkpoint, consolidated to full fp32
tensors offline (any ZeRO stage, no process group needed).

A run with `model.param_dtype: bfloat16` is exported in bfloat16: the weights its module held,
bit for bit (each is its float32 master rounded to bfloat16), not the masters. Those are the
weights every reward, evaluation and sample of the run came from and that an inference engine
loads in bfloat16 anyway, at half the size; the masters' extra digits matter only to continue
training, which resumes from the checkpoint itself (it keeps them).

A LoRA run (`model.lora.rank > 0`) checkpoints only its adapter: export applies it to the base
(`sft_model/` when an SFT warm start trained the base) and writes the merged model, loadable
without PEFT, plus the adapter alone in PEFT's format under `adapter/`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rlhf.config.errors import ConfigError
from rlhf.config.loader import load_recipe
from rlhf.controller.checkpoint import LATEST, checkpoint_root
from rlhf.engines.deepspeed_engine import CHECKPOINT_TAG
from rlhf.engines.safe_load import weights_only_loads
from rlhf.models.load import cast_parameters, load_causal_lm, load_tokenizer, param_dtype, resolve_model_path
from rlhf.models.lora import apply_lora, load_adapter_state_dict


def export_run(run_dir: str | Path, out: str | Path, step: int | None = None) -> Path:
    """Write the actor of checkpoint `step` (default: the newest) of `run_dir` to `out`."""
    run_dir, out = Path(run_dir), Path(out)
    if not (run_dir / "config.yaml").exists():
        raise ConfigError(f"rlhf export: {str(run_dir)!r} is not a run directory (no config.yaml)")
    existing = next(path for path in (out, *out.parents) if path.exists())
    if not existing.is_dir():
        raise ConfigError(f"rlhf export: OUT {str(out)!r} cannot be a model directory: {str(existing)!r} is an existing file; "
                          "choose a directory to write the model into")
    if (out / "config.json").exists():
        raise ConfigError(f"rlhf export: {str(out)!r} already holds a model; choose another directory")
    checkpoint = pick_checkpoint(run_dir, step)
    config = load_recipe(run_dir / "config.yaml")
    model_path = resolve_model_path(config.model, run_dir, config.trainer.seed)
    lora = config.model.lora
    base_path = str(run_dir / "sft_model") if lora.rank and (run_dir / "sft_model" / "config.json").exists() else model_path
    model = load_causal_lm(base_path, torch.device("cpu"), config.model.trust_remote_code)
    if lora.rank:
        model = merged_lora_actor(apply_lora(model, lora), checkpoint / "actor", out / "adapter")
    else:
        load_actor_weights(model, checkpoint / "actor")
    model = cast_parameters(model, param_dtype(config.model))
    model.save_pretrained(out)
    load_tokenizer(model_path, config.model.trust_remote_code).save_pretrained(out)
    return out


def pick_checkpoint(run_dir: Path, step: int | None, command: str = "rlhf export") -> Path:
    """`checkpoints/step_<step>`, or the one `checkpoints/latest` names (`command` starts the
    error messages). A checkpoint counts when it holds the actor's part (`actor/`)."""
    root = checkpoint_root(run_dir)
    if step is not None:
        name = f"step_{step:06d}"
    elif (root / LATEST).is_file():
        name = (root / LATEST).read_text(encoding="utf-8", errors="replace").strip()
        if not name:
            raise ConfigError(f"{command}: {str(root / LATEST)!r} is empty; pass --step S to choose a checkpoint "
                              f"(complete ones: {', '.join(complete_checkpoints(root)) or 'none'})")
    else:
        raise ConfigError(f"{command}: {str(run_dir)!r} has no checkpoint (checkpoints/latest is missing)")
    path = root / name
    if (path / "actor").is_dir():
        return path
    complete = ", ".join(complete_checkpoints(root)) or "none"
    if path.is_dir():
        held = ", ".join(sorted(p.name for p in path.iterdir())) or "nothing"
        raise ConfigError(
            f"{command}: checkpoint {str(path)!r} is incomplete: it has no actor/ (it holds {held}; complete checkpoints: {complete}). "
            "The actor's part was written somewhere else: with distributed.backend=ray, trainer.output_dir must be on a filesystem "
            "every node shares, and a relative one is resolved by each worker from its own working directory")
    raise ConfigError(f"{command}: no checkpoint {name} in {str(root)!r} (complete checkpoints: {complete})")


def complete_checkpoints(root: Path) -> list[str]:
    """Names of the checkpoints under `root` that hold the actor's part, oldest first."""
    return sorted(p.name for p in root.glob("step_*") if (p / "actor").is_dir()) if root.is_dir() else []


def load_actor_weights(model: torch.nn.Module, actor_dir: Path) -> None:
    """Copy the checkpointed actor weights into `model`; every parameter must be covered
    (tied weights, such as an LM head sharing the embedding, come along with their owner)."""
    state = actor_state_dict(actor_dir)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {name for name, _ in model.named_parameters(remove_duplicate=False)} - {name for name, _ in model.named_parameters()}
    untied_missing = [name for name in missing if name not in tied]
    if untied_missing or unexpected:
        raise RuntimeError(f"checkpoint {actor_dir} does not match the run's model: missing {untied_missing[:5]}, unexpected {unexpected[:5]}")


def merged_lora_actor(peft_model: torch.nn.Module, actor_dir: Path, adapter_dir: Path) -> torch.nn.Module:
    """The checkpoint's adapter loaded into `peft_model` (also saved to `adapter_dir` in PEFT's
    format), then merged into the base: a plain transformers model."""
    load_adapter_state_dict(peft_model, actor_state_dict(actor_dir, adapter_only=True), str(actor_dir))
    peft_model.save_pretrained(adapter_dir)
    return peft_model.merge_and_unload()


def actor_state_dict(actor_dir: Path, *, adapter_only: bool = False) -> dict[str, torch.Tensor]:
    """The actor's weights in a checkpoint (`adapter_only`: a LoRA run's, which hold no base)."""
    if (actor_dir / "engine.pt").exists():
        return torch.load(actor_dir / "engine.pt", map_location="cpu", weights_only=True)["module"]
    return deepspeed_state_dict(actor_dir, adapter_only)


def deepspeed_state_dict(actor_dir: Path, adapter_only: bool = False) -> dict[str, torch.Tensor]:
    """Full fp32 weights from DeepSpeed's checkpoint (ZeRO 1-3 shards merged; stage 0 keeps
    them whole in the model-states file); with `adapter_only`, the trainable tensors alone."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    tag_dir = actor_dir / CHECKPOINT_TAG
    if not tag_dir.is_dir():
        raise RuntimeError(f"{actor_dir} holds neither engine.pt nor a DeepSpeed checkpoint")
    if not list(tag_dir.glob("*optim_states.pt")):  # stage 0: no ZeRO shards
        return torch.load(tag_dir / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=True)["module"]
    with weights_only_loads():  # DeepSpeed's merge calls torch.load(weights_only=False)
        return get_fp32_state_dict_from_zero_checkpoint(str(actor_dir), tag=CHECKPOINT_TAG, exclude_frozen_parameters=adapter_only)
