"""The `reward_model` role: a frozen Hugging Face reward model that scores token sequences.

Four kinds of checkpoints, by how they read a score (the ORM and PRM sources pick one):

    kind        model class                         score read at
    classifier  AutoModelForSequenceClassification  the last token: the head's scalar (one label),
                                                    as Skywork-Reward (Liu et al. 2024) is served
    verdict     AutoModelForCausalLM                the last token: P(verdict token) for the next
                                                    token (an LLM judge answering "Yes"/"No")
    two_class   AutoModelForTokenClassification     each step separator: softmax over the 2 classes,
                                                    index 1 = good (Qwen2.5-Math-PRM, Zhang et al. 2025)
    token_tag   AutoModelForCausalLM                each step tag: softmax over the [good, bad] label
                                                    logits, P(good) (Math-Shepherd, Wang et al. 2024)

The worker takes token ids (the sources format and tokenize the text, see
:mod:`rlhf.rewards.rm_format`), runs the model in evaluation mode without gradients, in
micro-batches of `batch_size` rows, left-padded: the last column is then every row's last
token, and position ids count from each row's first real token, so a row scores the same in
any batch. Rows longer than `max_length` tokens are cut on the left (the end of a response,
where the score is read, is kept). A two_class checkpoint whose config registers only
`AutoModel` custom code (Qwen2.5-Math-PRM, `trust_remote_code: true`) is loaded with AutoModel;
its output must have `.logits` [B, T, 2].

Notation: N rows, T tokens (after padding), V vocabulary, K_i scored positions of row i.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, TypeVar

import torch

from rlhf.deadline import CallTimedOut, call_with_timeout
from rlhf.dispatch import SPLIT, dispatch

T = TypeVar("T")

KINDS = ("classifier", "verdict", "two_class", "token_tag")
"""Kinds of reward-model checkpoints (see the module docstring)."""
SEQUENCE_KINDS = ("classifier", "verdict")
"""Kinds that give one score per sequence; the others score positions (process reward models)."""
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class RewardModelTimeout(RuntimeError):
    """A reward model did not finish scoring a batch within its `kwargs.timeout_s`."""


@dataclass(frozen=True)
class RewardModelSpec:
    """What a reward source asks of its model, as plain data (it travels to the worker that
    serves it): the checkpoint, its kind, and how to run it. Checked when built."""

    path: str
    kind: str
    batch_size: int = 8
    max_length: int | None = None
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kwargs.kind: unknown reward model kind {self.kind!r}; valid: {', '.join(KINDS)}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"kwargs.batch_size: must be an integer >= 1, got {self.batch_size!r}")
        if self.max_length is not None and (isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 1):
            raise ValueError(f"kwargs.max_length: must be an integer >= 1 or null, got {self.max_length!r}")
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise ValueError(f"kwargs.dtype: unknown dtype {self.dtype!r}; valid: auto, {', '.join(DTYPES)}")


class Scorer(Protocol):
    """What a reward source calls to score token rows: a :class:`RewardModelWorker` in this
    process, or a proxy to the `reward_model` worker group that serves the same model."""

    def sequence_scores(self, rows: Sequence[Sequence[int]], positive_id: int | None = None,
                        negative_id: int | None = None) -> torch.Tensor: ...

    def position_probs(self, rows: Sequence[Sequence[int]], positions: Sequence[Sequence[int]],
                       positive_id: int | None = None, negative_id: int | None = None) -> list[torch.Tensor]: ...


def check_timeout(timeout_s: float) -> float:
    """`kwargs.timeout_s` of a reward-model source, as seconds > 0."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(f"kwargs.timeout_s: must be a number of seconds > 0, got {timeout_s!r}")
    return float(timeout_s)


def within_limit(call: Callable[[], T], timeout_s: float, spec: RewardModelSpec, rows: int) -> T:
    """`call()`, a scoring pass over `rows` rows, or RewardModelTimeout past `timeout_s`."""
    try:
        return call_with_timeout(call, timeout_s)
    except CallTimedOut:
        raise RewardModelTimeout(
            f"the {spec.kind} reward model {spec.path} took longer than kwargs.timeout_s={timeout_s:g} s to score "
            f"{rows} rows: it hangs, or needs more time (raise kwargs.timeout_s, or lower kwargs.batch_size / max_length)"
        ) from None


def token_id(tokenizer, text: str, key: str) -> int:
    """The id of `text` when `tokenizer` (a reward model's) encodes it as exactly one token;
    else a ValueError naming the source kwarg `key` (e.g. 'kwargs.good_token')."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise ValueError(f"{key}: {text!r} must be a single token of the reward model's tokenizer, "
                         f"but it encodes to {len(ids)} tokens {pieces}")
    return ids[0]


class RewardModels:
    """The `reward_model` role of a worker: every model-backed reward source's model, by the
    source's name. Rows are split over the group's ranks; each rank scores its share."""

    def __init__(self, specs: dict[str, RewardModelSpec]):
        self.models = {name: RewardModelWorker.from_spec(spec) for name, spec in specs.items()}

    @dispatch(SPLIT)
    def sequence_scores(self, rows: list[list[int]], name: str, positive_id: int | None = None,
                        negative_id: int | None = None) -> torch.Tensor:
        """[N] float32: :meth:`RewardModelWorker.sequence_scores` of model `name`."""
        return self.models[name].sequence_scores(rows, positive_id, negative_id)

    @dispatch(SPLIT)
    def position_probs(self, items: list[tuple[list[int], list[int]]], name: str, positive_id: int | None = None,
                       negative_id: int | None = None) -> list[torch.Tensor]:
        """N tensors [K_i]: :meth:`RewardModelWorker.position_probs` of model `name` for
        (row, positions) pairs (split together over the ranks)."""
        rows, positions = [row for row, _ in items], [pos for _, pos in items]
        return self.models[name].position_probs(rows, positions, positive_id, negative_id)


class RewardModelWorker:
    """A reward model and its own tokenizer, loaded from `path`; see the module docstring."""

    def __init__(self, path: str, kind: str, *, batch_size: int = 8, max_length: int | None = None,
                 dtype: str = "auto", device: str = "auto", trust_remote_code: bool = False, tokenizer=None):
        spec = RewardModelSpec(path, kind, batch_size, max_length, dtype, device, trust_remote_code)
        self.spec, self.path = spec, path
        self.kind, self.batch_size, self.max_length = kind, batch_size, max_length
        self.device = resolve_device(device)
        self.tokenizer = tokenizer if tokenizer is not None else load_rm_tokenizer(path, trust_remote_code)
        self.model = load_rm_model(path, kind, resolve_dtype(dtype, self.device), trust_remote_code).to(self.device)
        self.model.eval().requires_grad_(False)
        if kind == "classifier":
            self._check_classifier()

    @classmethod
    def from_spec(cls, spec: RewardModelSpec, tokenizer=None) -> RewardModelWorker:
        return cls(spec.path, spec.kind, batch_size=spec.batch_size, max_length=spec.max_length, dtype=spec.dtype,
                   device=spec.device, trust_remote_code=spec.trust_remote_code, tokenizer=tokenizer)

    @torch.no_grad()
    def sequence_scores(self, rows: Sequence[Sequence[int]], positive_id: int | None = None,
                        negative_id: int | None = None) -> torch.Tensor:
        """[N] float32: one score per row of token ids.

        classifier: the head's scalar at the last token. verdict: the probability that the
        next token is `positive_id`, a softmax over the whole vocabulary, or over the two logits
        [positive_id, negative_id] when `negative_id` is given.
        """
        if self.kind not in SEQUENCE_KINDS:
            raise ValueError(f"a {self.kind} reward model scores positions, not sequences")
        if self.kind == "verdict" and positive_id is None:
            raise ValueError("a verdict reward model needs the verdict token's id")
        scores = []
        for chunk in _chunks(self._truncate(rows), self.batch_size):
            inputs = self._padded(chunk)
            if self.kind == "classifier":
                self._check_last_tokens(chunk)
                scores.append(self.model(**inputs).logits[:, 0].float())
                continue
            logits = self.model(**inputs, logits_to_keep=1).logits[:, -1].float()
            scores.append(_label_probability(logits, positive_id, negative_id))
        return torch.cat(scores).cpu() if scores else torch.zeros(0)

    @torch.no_grad()
    def position_probs(self, rows: Sequence[Sequence[int]], positions: Sequence[Sequence[int]],
                       positive_id: int | None = None, negative_id: int | None = None) -> list[torch.Tensor]:
        """N tensors [K_i] float32: the probability of "good" at each given token position.

        two_class: softmax over the 2 classes of the token-classification head, index 1.
        token_tag: softmax over the LM logits [positive_id, negative_id] (good, bad label tokens).
        A position cut off by `max_length` (or negative) gets NaN.
        """
        if self.kind in SEQUENCE_KINDS:
            raise ValueError(f"a {self.kind} reward model scores sequences, not positions")
        if self.kind == "token_tag" and (positive_id is None or negative_id is None):
            raise ValueError("a token_tag reward model needs the ids of the good and the bad label tokens")
        truncated = self._truncate(rows)
        # a position counted in the full row, moved into the truncated row (< 0: cut off)
        shifted = [[p - (len(row) - len(kept)) for p in row_positions] for row, kept, row_positions in zip(rows, truncated, positions)]
        out: list[torch.Tensor] = []
        for chunk, chunk_positions in zip(_chunks(truncated, self.batch_size), _chunks(shifted, self.batch_size)):
            logits = self.model(**self._padded(chunk)).logits
            # [n, T, 2] class logits; a token_tag LM keeps only its (good, bad) label columns of V
            pairs, good = (logits, 1) if self.kind == "two_class" else (logits[..., [positive_id, negative_id]], 0)
            for row, row_positions, row_pairs in zip(chunk, chunk_positions, pairs):
                columns = [pairs.shape[1] - len(row) + p if p >= 0 else -1 for p in row_positions]
                out.append(_good_probability(row_pairs, columns, good))
        return out

    def _truncate(self, rows: Sequence[Sequence[int]]) -> list[list[int]]:
        """Rows cut to their last `max_length` tokens (left truncation keeps the response's end)."""
        if self.max_length is None:
            return [list(row) for row in rows]
        return [list(row[-self.max_length :]) for row in rows]

    def _padded(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        """`input_ids`, `attention_mask`, `position_ids` [n, T] of left-padded rows."""
        if any(len(row) == 0 for row in rows):
            raise ValueError("the reward model got an empty token sequence; its template must produce text")
        width = max(len(row) for row in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(row)) + row for row in rows], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], dtype=torch.long)
        positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
        return {"input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device), "position_ids": positions.to(self.device)}

    def _check_last_tokens(self, rows: list[list[int]]) -> None:
        """A row ending in the pad id would be scored at an earlier token by the classifier."""
        pad = self.model.config.pad_token_id
        if any(row[-1] == pad for row in rows):
            raise ValueError(f"a formatted text ends with the reward model's pad token (id {pad}), where a sequence "
                             "classifier cannot read its score; change the template, or give the tokenizer a distinct pad token")

    def _check_classifier(self) -> None:
        """A scalar head, and a pad id: Hugging Face's sequence classifiers read the score at the
        rightmost token that is not the pad token, which left padding makes the last token."""
        labels = self.model.config.num_labels
        if labels != 1:
            raise ValueError(f"kwargs.kind: a classifier reward model must have a one-label (scalar) head, this one has {labels} labels")
        if getattr(self.model.config, "pad_token_id", None) is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id


def _good_probability(row_pairs: torch.Tensor, columns: list[int], good: int) -> torch.Tensor:
    """[K] softmax probability of class `good` at `columns` of one row's [T, 2] logits (NaN at a column < 0)."""
    index = torch.tensor(columns, dtype=torch.long, device=row_pairs.device)
    probs = row_pairs[index.clamp(min=0)].float().softmax(dim=-1)[:, good]
    return torch.where(index >= 0, probs, torch.nan).cpu()


def _label_probability(logits: torch.Tensor, positive_id: int, negative_id: int | None) -> torch.Tensor:
    """[n] P(positive) from logits [n, V]: over the vocabulary, or over [positive, negative]."""
    if negative_id is None:
        return logits.float().log_softmax(dim=-1)[:, positive_id].exp()
    pair = logits[:, [positive_id, negative_id]].float()
    return pair.softmax(dim=-1)[:, 0]


def _chunks(rows: list, size: int) -> list[list]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def resolve_device(name: str) -> torch.device:
    """'auto': CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(f"kwargs.device: {name!r} is not a device ('auto', 'cpu', 'cuda', 'cuda:1', ...)") from None


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto': bfloat16 on CUDA, float32 elsewhere (CPU bfloat16 matmuls are slow)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ValueError(f"kwargs.dtype: unknown dtype {name!r}; valid: auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def load_rm_tokenizer(path: str, trust_remote_code: bool = False):
    """The checkpoint's own tokenizer (a fast one: sources locate markers by character offsets);
    the EOS token pads when it defines no pad token (padding is masked, any id would do)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ValueError(f"kwargs.path: cannot load a tokenizer from {path!r}: {error}") from None
    if not tokenizer.is_fast:
        raise ValueError(f"kwargs.path: the tokenizer of {path!r} is a slow (Python) tokenizer; a fast one is needed for character offsets")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.convert_ids_to_tokens(0)
    return tokenizer


def load_rm_model(path: str, kind: str, dtype: torch.dtype, trust_remote_code: bool = False) -> torch.nn.Module:
    """The checkpoint at `path` with the head that `kind` reads."""
    import transformers

    from rlhf.models.load import quiet_transformers, warn_remote_code

    quiet_transformers()
    if trust_remote_code:
        warn_remote_code(path, "kwargs.trust_remote_code of the reward source")
    class_name = {"classifier": "AutoModelForSequenceClassification", "verdict": "AutoModelForCausalLM",
                  "token_tag": "AutoModelForCausalLM", "two_class": "AutoModelForTokenClassification"}[kind]
    try:
        if kind == "two_class" and trust_remote_code:
            config = transformers.AutoConfig.from_pretrained(path, trust_remote_code=True)
            auto_map = getattr(config, "auto_map", None) or {}
            if "AutoModel" in auto_map and class_name not in auto_map:
                class_name = "AutoModel"
        auto_class = getattr(transformers, class_name)
        return auto_class.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ValueError(f"kwargs.path: cannot load a {kind} reward model ({class_name}) from {path!r}: {error}") from None
