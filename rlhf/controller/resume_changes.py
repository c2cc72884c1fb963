"""What a resumed launch may change: its config compared key by key with the previous launch's.

A checkpoint holds state that was built from the recipe: weights of one architecture, an
optimiser that carries its own learning rate, a data position that indexes one list of rows,
one file per process of one layout. A change the checkpoint cannot follow would make the
resumed run wrong or silently ignore the new value, so it is refused (:data:`REFUSED`, with the
reason given to the user); every other change is a legitimate intent (more steps, another
evaluation cadence, other loggers, another clip range or reward weight) and is applied and
shown.

Keys are dotted paths of the resolved config (`reward.sources.0.weight`), patterns use
`fnmatch` wildcards (`model.tiny.*`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rlhf.config.errors import ConfigError

NOT_COMPARED = ("trainer.output_dir", "trainer.resume")
"""Where and from what the run resumes: naming them differently is how one resumes."""

Config = Mapping[str, Any]


@dataclass(frozen=True)
class Change:
    """One key whose value differs between the previous launch (`old`) and this one (`new`);
    MISSING where a side has no such key."""

    key: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.key}: {_show(self.old)} -> {_show(self.new)}"


MISSING = "(absent)"


@dataclass(frozen=True)
class Resume:
    """The two configs compared, and what the checkpoint is."""

    old: Config
    new: Config
    sft_checkpoint: bool = False
    """The checkpoint is the SFT stage's (its optimiser, not the RL one's, is restored)."""


def _always(resume: Resume, key: str) -> bool:
    return True


def _critic_appears_or_goes(resume: Resume, key: str) -> bool:
    from rlhf.config.validate import uses_critic

    return uses_critic(resume.old["algorithm"]["advantage"]) != uses_critic(resume.new["algorithm"]["advantage"])


def _schedule_moves(resume: Resume, key: str) -> bool:
    """Whether the LR schedule of a model that `key` concerns depends on the optimiser step
    (a warm-up or a cosine decay): the checkpoint's schedule position counts optimiser steps,
    and these keys change how many make an RL step."""
    from rlhf.config.validate import uses_critic

    old = resume.old
    models = {"actor": ["actor"], "critic": ["critic"]}.get(key.split(".")[0], ["actor", "critic"])
    if "critic" in models and not uses_critic(old["algorithm"]["advantage"]):
        models.remove("critic")
    return any(old[name]["warmup_steps"] > 0 or old[name]["lr_schedule"] != "constant" for name in models)


def _sft_checkpoint(resume: Resume, key: str) -> bool:
    return resume.sft_checkpoint


def _param_dtype_changes(resume: Resume, key: str) -> bool:
    """Whether the weights' dtype changes; a run from before `model.param_dtype` existed had float32."""
    return resume.old["model"].get("param_dtype", "float32") != resume.new["model"].get("param_dtype", "float32")


WEIGHTS = "the checkpoint holds weights of this architecture and shape"
ADAPTERS = "the checkpoint's LoRA adapters were built with it"
OPTIMISER = "the checkpoint's optimiser carries its own value, the new one would be silently ignored"
LAYOUT = "the checkpoint holds one state file per process of this layout, in this engine's format"
ROWS = "the checkpoint's data position indexes the training rows these keys select"
EVAL_SET = "the accuracy before RL (step 0) was measured on this evaluation set; before and after would compare two sets"
SCHEDULE = "the checkpoint's LR-schedule position counts optimiser steps, and this changes how many make an RL step"

REFUSED: tuple[tuple[str, str, Callable[[Resume, str], bool]], ...] = (
    # the model
    ("model.source", WEIGHTS, _always), ("model.path", WEIGHTS, _always), ("model.tiny.*", WEIGHTS, _always),
    ("model.param_dtype", "the checkpoint holds the trained weights in this dtype (bfloat16 ones with float32 master weights)", _param_dtype_changes),
    ("model.lora.rank", ADAPTERS, _always), ("model.lora.target_modules", ADAPTERS, _always), ("model.lora.alpha", ADAPTERS, _always),
    ("critic.path", WEIGHTS, _always), ("critic.loss", WEIGHTS + " (the value head)", _always), ("critic.hl_gauss.*", WEIGHTS + " (the value head)", _always),
    ("ref.path", "the checkpoint holds the reference weights", _always),
    ("sft.enabled", "the policy (and with LoRA the base its adapters apply to) did or did not start from an SFT model", _always),
    # engines and the distributed layout
    ("train.engine", LAYOUT, _always), ("train.zero_stage", LAYOUT, _always),
    ("train.offload_optimizer", LAYOUT, _always), ("train.offload_params", LAYOUT, _always),
    ("rollout.engine", "the checkpoint holds the rollout engine's sampling state", _always),
    ("rollout.vllm.tensor_parallel_size", LAYOUT, _always), ("distributed.backend", LAYOUT, _always),
    ("resources.pools.*.nodes", LAYOUT, _always), ("resources.pools.*.devices_per_node", LAYOUT, _always),
    ("resources.actor", LAYOUT, _always), ("resources.critic", LAYOUT, _always),
    ("resources.rollout", LAYOUT, _always), ("resources.ref", LAYOUT, _always),
    # optimiser and controller state restored from the checkpoint
    ("actor.lr", OPTIMISER, _always), ("actor.betas", OPTIMISER, _always), ("actor.weight_decay", OPTIMISER, _always),
    ("critic.lr", OPTIMISER, _always), ("critic.betas", OPTIMISER, _always), ("critic.weight_decay", OPTIMISER, _always),
    ("sft.lr", OPTIMISER, _sft_checkpoint),
    ("algorithm.kl.coef", "the checkpoint's KL controller carries beta (and a reference exists only with a KL term)", _always),
    ("algorithm.kl.adaptive", "the checkpoint's KL controller carries beta", _always),
    ("algorithm.advantage", "a critic exists with one estimator and not the other", _critic_appears_or_goes),
    ("trainer.seed", "the checkpoint restores every random-number state, the new seed would be silently ignored", _always),
    # the data stream
    ("data.train.path", ROWS, _always), ("data.train.name", ROWS, _always), ("data.train.split", ROWS, _always),
    ("data.train.size", ROWS, _always), ("data.train.prompt_key", ROWS, _always), ("data.train.answer_key", ROWS, _always),
    ("data.train.answer_extractor", ROWS, _always), ("data.arithmetic.*", ROWS, _always),
    ("data.max_prompt_tokens", ROWS + " (longer prompts are dropped)", _always),
    ("data.prompt_template", ROWS + " (longer prompts are dropped)", _always),
    ("data.chat_template", ROWS + " (longer prompts are dropped)", _always),
    ("data.system_prompt", ROWS + " (longer prompts are dropped)", _always),
    ("data.eval.path", EVAL_SET, _always), ("data.eval.name", EVAL_SET, _always), ("data.eval.split", EVAL_SET, _always),
    ("data.eval.size", EVAL_SET, _always), ("data.eval.prompt_key", EVAL_SET, _always), ("data.eval.answer_key", EVAL_SET, _always),
    ("data.eval.answer_extractor", EVAL_SET, _always),
    ("data.train_batch_size", SCHEDULE, _schedule_moves), ("rollout.n", SCHEDULE, _schedule_moves),
    ("actor.mini_batch_size", SCHEDULE, _schedule_moves), ("actor.ppo_epochs", SCHEDULE, _schedule_moves),
    ("critic.mini_batch_size", SCHEDULE, _schedule_moves), ("critic.ppo_epochs", SCHEDULE, _schedule_moves),
)
"""(key pattern, why the checkpoint cannot follow a change, when the rule applies)."""


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of plain config data; lists of mappings are indexed
    (`reward.sources.0.type`), other lists are one value."""
    if isinstance(data, Mapping):
        items = data.items()
    elif isinstance(data, list) and data and all(isinstance(item, Mapping) for item in data):
        items = ((str(index), item) for index, item in enumerate(data))
    else:
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def changed_keys(old: Config, new: Config) -> list[Change]:
    """Every key whose value differs, in the order of the new config."""
    old_flat, new_flat = flatten(old), flatten(new)
    keys = list(new_flat) + [key for key in old_flat if key not in new_flat]
    return [
        Change(key, old_flat.get(key, MISSING), new_flat.get(key, MISSING))
        for key in keys
        if key not in NOT_COMPARED and old_flat.get(key, MISSING) != new_flat.get(key, MISSING)
    ]


def refusal(change: Change, resume: Resume) -> str | None:
    """Why the checkpoint cannot follow `change`, or None when it can."""
    for pattern, reason, applies in REFUSED:
        if fnmatch.fnmatchcase(change.key, pattern) and applies(resume, change.key):
            return reason
    return None


def check_changes(resume: Resume, where: str) -> list[Change]:
    """The changes from `resume.old` (the previous launch's config) to `resume.new`, all
    allowed; a ConfigError naming every refused key with its old and new value and the reason,
    when there is one. `where`: the run directory (for the message)."""
    changes = changed_keys(resume.old, resume.new)
    refused = [(change, reason) for change in changes if (reason := refusal(change, resume)) is not None]
    if refused:
        listed = "; ".join(f"{change} ({reason})" for change, reason in refused)
        raise ConfigError(
            f"trainer.output_dir: {where!r} holds a run whose checkpoint cannot continue with this recipe: {listed}. "
            "Undo these changes to resume it, or choose another trainer.output_dir to start a new run (nothing was written)"
        )
    return changes


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) and value != MISSING else str(value)
    return text if len(text) <= 80 else text[:77] + "..."
