"""The reward model a search strategy spends its compute through: an ORM or a PRM directory
written by `rlhf rm` (its `reward_model.json` says which, and how a PRM marks steps).

Scores come from the reward sources the RL loop uses (:mod:`rlhf.rewards.orm`,
:mod:`rlhf.rewards.prm`), so a response is scored the same way in training and in search:

- ORM: the classifier's scalar (a logit); its vote weight is the sigmoid of it, a probability
  that the response is good (a weighted vote needs weights >= 0);
- PRM: the step scores folded into one by `aggregate` (min, product, last, mean:
  :func:`rlhf.search.aggregate.aggregate_steps`), already a probability: score and weight.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from reward_models.checkpoint import INFO_FILE
from rlhf.config.errors import ConfigError
from rlhf.data.batch import Batch
from rlhf.search.aggregate import aggregate_steps


def read_reward_model_info(path: str | Path, option: str = "--reward-model") -> dict:
    """The sidecar of the reward-model directory `path`; a ConfigError (exit 2) naming `option`
    when `path` is not one."""
    info_path = Path(path) / INFO_FILE
    if not Path(path).is_dir():
        raise ConfigError(f"{option}: {str(path)!r} is not a directory; give the model directory `rlhf rm` wrote (OUTPUT_DIR/model)")
    if not info_path.is_file():
        raise ConfigError(f"{option}: {str(path)!r} is not a reward-model directory: it has no {INFO_FILE} (written by `rlhf rm` "
                          "next to config.json, naming the model's type and how a PRM marks steps); give OUTPUT_DIR/model of an `rlhf rm` run")
    try:
        info = json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{option}: {info_path} is not readable JSON ({error})") from None
    if info.get("type") not in ("orm", "prm"):
        raise ConfigError(f"{option}: {info_path} names type {info.get('type')!r}; a reward model is 'orm' or 'prm'")
    return info


class SearchRewardModel:
    """Scores responses for best-of-n and weighted voting (see the module docstring)."""

    def __init__(self, path: str | Path, aggregate: str = "min", *, device: str = "auto", option: str = "--reward-model"):
        from rlhf.rewards.orm import OutcomeRewardModelSource
        from rlhf.rewards.prm import ProcessRewardModelSource

        info = read_reward_model_info(path, option)
        self.path, self.type, self.aggregate = str(path), info["type"], aggregate
        aggregate_steps([], aggregate)  # an unknown aggregation fails here, before the model loads
        try:
            if self.type == "orm":
                self.source = OutcomeRewardModelSource(self.path, info.get("kind", "classifier"), device=device)
            else:
                self.source = ProcessRewardModelSource(self.path, info.get("kind", "two_class"), separator=info.get("separator"),
                                                       step_split=info.get("step_split"), device=device)
        except ValueError as error:  # e.g. a PRM whose tokenizer lacks its step separator
            raise ConfigError(f"{option}: the {self.type.upper()} at {self.path!r} cannot score: {error}") from None

    def scores(self, batch: Batch) -> torch.Tensor:
        """[B] float32: the ORM's scalar, or the PRM's aggregate, of each (prompt, response)."""
        output = self.source.score(batch)
        if self.type == "orm":
            return output.scores.float()
        return torch.tensor([aggregate_steps(steps, self.aggregate) for steps in output.step_scores], dtype=torch.float32)

    def vote_weights(self, scores: torch.Tensor) -> torch.Tensor:
        """[B] weights >= 0 of `scores` [B]: the sigmoid of an ORM's logit, a PRM's aggregate as it is."""
        return torch.sigmoid(scores) if self.type == "orm" else scores
