"""`type: prm`: a process reward model scores every reasoning step of a response.

    reward:
      process: {refine: clip_delta, eta: 0.5, alpha: 1.0}
      sources:
        - {type: math}
        - type: prm
          kwargs: {path: Qwen/Qwen2.5-Math-PRM-7B, kind: two_class, separator: "<extra_0>",
                   chat_template: true, trust_remote_code: true,
                   system_prompt: "Please reason step by step, and put your final answer within \\\\boxed{}."}

The response is split into steps (:func:`rlhf.rewards.steps.split_steps`: on blank lines, or
on the regex `step_split`); the PRM reads the prompt and the steps, each followed by a marker,
and scores every step prefix at its marker (Lightman et al. 2023; how the markers are located:
:mod:`rlhf.rewards.rm_format`):

- `kind: two_class` (Qwen2.5-Math-PRM, Zhang et al. 2025): `separator` (e.g. "<extra_0>") after
  each step; a token-classification head, softmax over its 2 classes, index 1 = good.
- `kind: token_tag` (Math-Shepherd, Wang et al. 2024): `tag` (e.g. " ки") after each step; a
  causal LM, softmax over the logits of `good_token` ("+") and `bad_token` ("-") at the tag.

Separator, tag and label strings must each be one token of the PRM's tokenizer (checked when
the source is built). `joiner` is put between a marker and the next step ("" by default;
Math-Shepherd writes one step per line: "\\n").

The source returns `step_scores` (the raw probabilities) and `step_ends` (the policy's response
token where each step's text ends), which the combiner refines (`reward.process`) and places on
those tokens; its scalar `scores` is the smallest step score (the usual PRM aggregate; 0.0 for a
response without steps), logged as `reward/<name>/mean` but not added to the reward. Steps
whose marker falls in the part cut off by `max_length` take the score of the first scored step.
Metrics: `steps_mean` (steps per response), `step_score_mean` (over all steps), `markers_merged`.

As for ORM sources (:mod:`rlhf.rewards.orm`), the model is the `reward_model` role: in this
process on the local backend, a worker group on Ray.
"""

from __future__ import annotations

import re

import torch

from rlhf.data.batch import Batch
from rlhf.rewards.base import RewardOutput
from rlhf.rewards.offsets import token_indices_of_chars, valid_ids
from rlhf.rewards.rm_format import RMFormatter
from rlhf.rewards.steps import split_steps
from rlhf.workers.reward_model import (
    RewardModelSpec,
    RewardModelWorker,
    Scorer,
    check_timeout,
    load_rm_tokenizer,
    token_id,
    within_limit,
)

PRM_KINDS = ("two_class", "token_tag")


class ProcessRewardModelSource:
    """Scores the steps of each response with a process reward model (see the module docstring)."""

    def __init__(self, path: str | None = None, kind: str = "two_class", *, step_split: str | None = None,
                 separator: str | None = None, tag: str | None = None, good_token: str | None = None,
                 bad_token: str | None = None, joiner: str = "", template: str | None = None,
                 chat_template: bool = False, system_prompt: str | None = None, batch_size: int = 8,
                 max_length: int | None = None, dtype: str = "auto", device: str = "auto", trust_remote_code: bool = False,
                 timeout_s: float = 600.0, load_model: bool = True):
        if not path:
            raise ValueError("kwargs.path: a prm source needs the process reward model's directory or hub name")
        if kind not in PRM_KINDS:
            raise ValueError(f"kwargs.kind: a prm source is two_class or token_tag, got {kind!r}")
        _check_marker_options(kind, separator, tag, good_token, bad_token)
        if step_split is not None:
            _check_regex(step_split)
        self.step_split, self.joiner = step_split, joiner
        self.spec = RewardModelSpec(path, kind, batch_size, max_length, dtype, device, trust_remote_code)
        self.timeout_s = check_timeout(timeout_s)
        tokenizer = load_rm_tokenizer(path, trust_remote_code)
        self.formatter = RMFormatter(tokenizer, "steps", template=template, chat_template=chat_template, system_prompt=system_prompt)
        if kind == "two_class":
            self.marker, self.good_id, self.bad_id = separator, None, None
            self.marker_id = token_id(tokenizer, separator, "kwargs.separator")
        else:
            self.marker = tag
            self.marker_id = token_id(tokenizer, tag, "kwargs.tag")
            self.good_id = token_id(tokenizer, good_token or "+", "kwargs.good_token")
            self.bad_id = token_id(tokenizer, bad_token or "-", "kwargs.bad_token")
        self.scorer: Scorer | None = RewardModelWorker.from_spec(self.spec, tokenizer) if load_model else None

    def attach(self, scorer: Scorer) -> None:
        """Score with `scorer` (the reward_model worker group serving this source's model)."""
        self.scorer = scorer

    def score(self, batch: Batch) -> RewardOutput:
        """`scores [B]` (smallest step score), `step_scores` and `step_ends` (B tensors [K_b])."""
        tokenizer = policy_tokenizer(batch)
        prompts = [str(p) for p in (batch["prompt"] if "prompt" in batch else batch["prompt_text"])]
        responses = [str(r) for r in batch["response_text"]]
        spans = [split_steps(text, self.step_split) for text in responses]
        bodies = [self._body(text, row_spans) for text, row_spans in zip(responses, spans)]
        rows, positions = self.formatter.encode(prompts, [body for body, _ in bodies], [ends for _, ends in bodies])
        probs = within_limit(lambda: self.scorer.position_probs(rows, positions, self.good_id, self.bad_id), self.timeout_s, self.spec, len(rows))
        step_scores = [_fill_cut_steps(p) for p in probs]
        ids, mask = batch["response_ids"], batch["response_mask"]
        step_ends = [torch.tensor(token_indices_of_chars(tokenizer, valid_ids(ids[i], mask[i]), [end for _, end in spans[i]]), dtype=torch.long)
                     for i in range(len(spans))]
        scores = torch.tensor([s.min().item() if len(s) else 0.0 for s in step_scores], dtype=torch.float32)
        all_steps = torch.cat(step_scores) if step_scores else torch.zeros(0)
        merged = sum(int(row[p] != self.marker_id) for row, row_positions in zip(rows, positions) for p in row_positions)
        metrics = {
            "steps_mean": float(sum(map(len, spans))) / max(1, len(spans)),
            "step_score_mean": all_steps.mean().item() if len(all_steps) else 0.0,
            "markers_merged": float(merged),
        }
        return RewardOutput(scores, metrics, step_scores=step_scores, step_ends=step_ends)

    def _body(self, text: str, spans: list[tuple[int, int]]) -> tuple[str, list[int]]:
        """The steps of `text`, each followed by the marker, joined by `joiner`; and the
        exclusive character end of each marker in that body."""
        parts, ends, length = [], [], 0
        for index, (start, end) in enumerate(spans):
            piece = ("" if index == 0 else self.joiner) + text[start:end] + self.marker
            parts.append(piece)
            length += len(piece)
            ends.append(length)
        return "".join(parts), ends


def policy_tokenizer(batch: Batch):
    """The tokenizer that produced `response_ids` (the rollout engine puts it in `batch.meta`)."""
    if "tokenizer" not in batch.meta:
        raise ValueError("a prm source maps steps to response tokens and needs the policy tokenizer in "
                         "batch.meta['tokenizer'], which the rollout engine sets")
    return batch.meta["tokenizer"]


def _fill_cut_steps(probs: torch.Tensor) -> torch.Tensor:
    """Steps not scored (NaN: their marker was cut off on the left) take the first scored step's score."""
    missing = probs.isnan()
    if not missing.any():
        return probs
    if missing.all():
        raise ValueError("kwargs.max_length: too small, it cuts off every step marker of a response (the text after "
                         "the last step is longer than max_length tokens)")
    return torch.where(missing, probs[~missing][0], probs)


def _check_marker_options(kind: str, separator: str | None, tag: str | None, good: str | None, bad: str | None) -> None:
    """two_class takes a separator; token_tag a tag and (optionally) its label tokens."""
    if kind == "two_class":
        if not separator:
            raise ValueError("kwargs.separator: kind two_class needs the string put after each step (e.g. '<extra_0>')")
        extra = [name for name, value in (("tag", tag), ("good_token", good), ("bad_token", bad)) if value is not None]
        if extra:
            raise ValueError(f"kwargs.{extra[0]}: only used with kind: token_tag (two_class reads class 1 of its head)")
        return
    if not tag:
        raise ValueError("kwargs.tag: kind token_tag needs the tag string put after each step (e.g. ' ки')")
    if separator is not None:
        raise ValueError("kwargs.separator: only used with kind: two_class (token_tag places kwargs.tag)")


def _check_regex(pattern: str) -> None:
    try:
        re.compile(pattern)
    except (re.error, TypeError) as error:
        raise ValueError(f"kwargs.step_split: {pattern!r} is not a regular expression: {error}") from None
