"""`type: orm`: an outcome reward model scores each whole response.

    reward:
      sources:
        - {type: math}
        - type: orm
          weight: 0.5
          kwargs: {path: Skywork/Skywork-Reward-Llama-3.1-8B-v0.2, kind: classifier, chat_template: true}

Kinds (see :mod:`rlhf.workers.reward_model`): `classifier` (the scalar of a
sequence-classification head at the last token) and `verdict` (a causal LM's probability that
the next token is `verdict_token`, e.g. " Yes", after a template that asks for a verdict; with
`negative_token` the softmax runs over the two tokens only). The score sits on the response's
last token like any outcome reward (weighted by the source's `weight`). Metrics:
`score_mean`, `score_std`.

The source formats and tokenizes the text in the controller; the model itself is the
`reward_model` role: in this process on the local backend, a worker group on Ray (then the
source is built without it and the controller attaches the group's scorer).
"""

from __future__ import annotations

from rlhf.data.batch import Batch
from rlhf.rewards.base import RewardOutput
from rlhf.rewards.rm_format import RMFormatter
from rlhf.workers.reward_model import (
    SEQUENCE_KINDS,
    RewardModelSpec,
    RewardModelWorker,
    Scorer,
    check_timeout,
    load_rm_tokenizer,
    token_id,
    within_limit,
)


class OutcomeRewardModelSource:
    """Scores (prompt, response) pairs with a reward model (see the module docstring)."""

    def __init__(self, path: str | None = None, kind: str = "classifier", *, template: str | None = None,
                 chat_template: bool = False, system_prompt: str | None = None, verdict_token: str | None = None,
                 negative_token: str | None = None, batch_size: int = 8, max_length: int | None = None,
                 dtype: str = "auto", device: str = "auto", trust_remote_code: bool = False, timeout_s: float = 600.0,
                 load_model: bool = True):
        """Load the tokenizer (and, with `load_model`, the model) at `path`, a directory or hub
        name; every kwarg is described in the module docstring, in :mod:`rlhf.rewards.rm_format`
        (template, chat_template, system_prompt) and in
        :class:`~rlhf.workers.reward_model.RewardModelWorker` (the rest)."""
        if not path:
            raise ValueError("kwargs.path: an orm source needs the reward model's directory or hub name")
        if kind not in SEQUENCE_KINDS:
            raise ValueError(f"kwargs.kind: an orm source reads a classifier or a verdict, got {kind!r}; valid: {', '.join(SEQUENCE_KINDS)}")
        if kind == "classifier" and (verdict_token is not None or negative_token is not None):
            raise ValueError("kwargs.verdict_token / negative_token: only used with kind: verdict")
        if kind == "verdict" and not verdict_token:
            raise ValueError("kwargs.verdict_token: kind verdict needs the token whose probability is the score (e.g. ' Yes')")
        self.spec = RewardModelSpec(path, kind, batch_size, max_length, dtype, device, trust_remote_code)
        self.timeout_s = check_timeout(timeout_s)
        tokenizer = load_rm_tokenizer(path, trust_remote_code)
        self.formatter = RMFormatter(tokenizer, "response", template=template, chat_template=chat_template, system_prompt=system_prompt)
        self.positive_id = token_id(tokenizer, verdict_token, "kwargs.verdict_token") if verdict_token else None
        self.negative_id = token_id(tokenizer, negative_token, "kwargs.negative_token") if negative_token else None
        self.scorer: Scorer | None = RewardModelWorker.from_spec(self.spec, tokenizer) if load_model else None

    def attach(self, scorer: Scorer) -> None:
        """Score with `scorer` (the reward_model worker group serving this source's model)."""
        self.scorer = scorer

    def score(self, batch: Batch) -> RewardOutput:
        """`scores [B]` float32: the reward model's score of each (prompt, response)."""
        prompts = batch["prompt"] if "prompt" in batch else batch["prompt_text"]
        rows, _ = self.formatter.encode([str(p) for p in prompts], [str(r) for r in batch["response_text"]])
        scores = within_limit(lambda: self.scorer.sequence_scores(rows, self.positive_id, self.negative_id), self.timeout_s, self.spec, len(rows))
        std = scores.std().item() if len(scores) > 1 else 0.0
        return RewardOutput(scores, {"score_mean": scores.mean().item() if len(scores) else 0.0, "score_std": std})
