"""Generation stopped at the end of a reasoning step: what step-level search asks of an engine.

A step ends where its text first holds the step delimiter (a regex, by default a blank line:
:data:`rlhf.rewards.steps.BLANK_LINE`, how a PRM cuts a response into steps) after some
non-blank text, so leading blank lines never make an empty step. The token that completes the
delimiter stays in the step whole: real tokenizers merge ".\\n\\n" into one token, and a token
that also holds the start of the next line (".\\n\\nThe") keeps it. With a zero-width delimiter
(a lookahead such as `(?=Step)`) the text that completes the match, the start of the next step,
therefore falls in this step.

:class:`StepStop` is the stop hook of the decode loops (:func:`rlhf.rollout.decode.decode`,
:func:`rlhf.rollout.static_decode.decode_static`): after each decoding step it is given the
rows still running and their new tokens, and says which of them end here, by the delimiter or
by their own token limit. It decodes incrementally, as vLLM's detokenizer does: each row keeps
the text decoded so far and decodes only its newest tokens together with those that gave its
last piece of text (so that tokenizers which drop a leading space or hold back half a UTF-8
character still give the right text), all rows at once in one `batch_decode` call; the regex
then searches the row's text, in C. Rows that ended are never asked about again.

Engines return one :class:`rlhf.search.beam.Step` per sample (:func:`row_steps`). A step's
tokens are the policy's own, never re-tokenised; an EOS the policy generated is kept at its end,
as in `generate`'s `response_ids`, so `num_tokens == len(token_ids)` and a finished solution's
tokens are a response the trainer can score as it is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from rlhf.rewards.steps import BLANK_LINE
from rlhf.rollout.base import StepPrompt
from rlhf.search.beam import Step

DELIMITER, LENGTH = "delimiter", "length"
"""Why a row ended in a :class:`StepStop`: it holds the delimiter, or it reached its limit."""

UNFINISHED_CHARACTER = "\ufffd"
"""What a byte-level tokenizer decodes half a UTF-8 character to: wait for the next token."""


def compile_delimiter(delimiter: str | None) -> re.Pattern:
    """The step delimiter as a compiled regex (None: a blank line); a ValueError names what is
    wrong with an invalid one."""
    pattern = BLANK_LINE if delimiter is None else delimiter
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"step delimiter {pattern!r} is not a valid regular expression: {error}") from None
    if compiled.fullmatch(""):
        raise ValueError(f"step delimiter {pattern!r} matches the empty text, so every step would end after its "
                         "first character; use a pattern that needs at least one character or a lookahead")
    return compiled


class StepStop:
    """The stop hook that ends decoding rows at the step delimiter or at their token limits.

    One instance serves one decode call of B rows; `limits [B]` are the tokens each row may
    still generate (the response's cap minus its prefix). After the call, `tokens[row]` holds
    the tokens the row was fed (all it generated, but an EOS: the loops stop a row at EOS
    without asking) and `reasons[row]` why it stopped (DELIMITER, LENGTH, or None: EOS, or
    never stopped).
    """

    def __init__(self, tokenizer, limits: Sequence[int], delimiter: str | None = None):
        self.tokenizer = tokenizer
        self.pattern = compile_delimiter(delimiter)
        self.limits = list(limits)
        rows = len(self.limits)
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.reasons: list[str | None] = [None] * rows
        self.text = [""] * rows
        self.content_start: list[int | None] = [None] * rows  # where the first non-blank character is
        self.prefix_offset = [0] * rows  # tokens before it are decoded for good
        self.read_offset = [0] * rows  # tokens before it are in `text`

    def __call__(self, rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The decode loops' hook: `rows [A]` (rows of the call still running) just generated
        `tokens [A]`; returns [A] bool, True for the rows that end here."""
        ended = self.feed(rows.tolist(), tokens.tolist())
        return torch.tensor(ended, dtype=torch.bool, device=tokens.device)

    def feed(self, rows: Sequence[int], tokens: Sequence[int]) -> list[bool]:
        """Append one token to each of `rows` (distinct, not yet stopped); True where the row
        ends with it. A row that reaches its limit ends by LENGTH, even if the token also
        completes the delimiter."""
        checked = []
        for row, token in zip(rows, tokens):
            if self.reasons[row] is not None:
                raise ValueError(f"StepStop: row {row} already ended ({self.reasons[row]}); a decode loop fed it again")
            self.tokens[row].append(token)
            if len(self.tokens[row]) >= self.limits[row]:
                self.reasons[row] = LENGTH
            else:
                checked.append(row)
        for row in self._delimited(checked):
            self.reasons[row] = DELIMITER
        return [self.reasons[row] is not None for row in rows]

    def _delimited(self, rows: list[int]) -> list[int]:
        """The rows whose text, after their newest token, holds the delimiter after some
        non-blank text. Incremental decoding: the text of tokens[prefix_offset:] minus that of
        tokens[prefix_offset:read_offset] is what the new tokens add."""
        if not rows:
            return []
        spans = []
        for row in rows:
            tokens, start = self.tokens[row], self.prefix_offset[row]
            spans += [tokens[start : self.read_offset[row]], tokens[start:]]
        texts = self.tokenizer.batch_decode(spans, skip_special_tokens=True)
        found = []
        for row, before, now in zip(rows, texts[::2], texts[1::2]):
            if len(now) <= len(before) or now.endswith(UNFINISHED_CHARACTER):
                continue  # nothing visible yet, or half a character
            self.text[row] += now[len(before) :]
            self.prefix_offset[row], self.read_offset[row] = self.read_offset[row], len(self.tokens[row])
            if self._holds_delimiter(row):
                found.append(row)
        return found

    def _holds_delimiter(self, row: int) -> bool:
        """Whether the row's text holds a match of the delimiter that starts after its first
        non-blank character (the search before the newest text found none)."""
        text = self.text[row]
        if self.content_start[row] is None:
            blank = len(text) - len(text.lstrip())
            if blank == len(text):
                return False
            self.content_start[row] = blank
        return self.pattern.search(text, self.content_start[row] + 1) is not None


def step_rows(prompts: Sequence[StepPrompt], k: int, max_new_tokens: int) -> tuple[list[list[int]], list[int]]:
    """The rows of a step-generation call: each request's prompt + prefix `k` times in a row,
    and the tokens each row may still generate (max_new_tokens minus its prefix, at least 0;
    engines generate only for the rows whose limit is above 0: :func:`per_request`).
    Checks the arguments, naming the request at fault."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"generate_steps: k must be a whole number >= 1, got {k!r}")
    inputs, limits = [], []
    for i, request in enumerate(prompts):
        if not request.prompt_ids:
            raise ValueError(f"generate_steps: request {i} has an empty prompt; a step continues a prompt")
        row = [*request.prompt_ids, *request.prefix_ids]
        inputs += [row] * k
        limits += [max(max_new_tokens - len(request.prefix_ids), 0)] * k
    return inputs, limits


def row_steps(stop: StepStop, eos_tokens: Sequence[int | None]) -> list[Step]:
    """One Step per row of a call: the tokens `stop` was fed plus the row's EOS token, if it
    generated one (`eos_tokens [B]`). Only a row ended by the delimiter goes on: EOS, the
    length limit, or no tokens left to generate end the solution."""
    steps = []
    for row, eos in enumerate(eos_tokens):
        tokens = (*stop.tokens[row], eos) if eos is not None else tuple(stop.tokens[row])
        ended = eos is not None or stop.reasons[row] != DELIMITER
        steps.append(Step(tokens, ended, len(tokens)))
    return steps


def per_request(limits: Sequence[int], live_steps: Sequence[Step], k: int) -> list[list[Step]]:
    """Steps grouped by request, k consecutive rows each (the order of :func:`step_rows`):
    `live_steps` are those of the rows with tokens left (`limits [B]` > 0), in order; the
    others, whose prefix already reached the cap, get an empty step that ends the solution
    (the decode loops always generate a first token, so such rows never enter them)."""
    live = iter(live_steps)
    steps = [next(live) if limit > 0 else Step((), True, 0) for limit in limits]
    return [steps[i : i + k] for i in range(0, len(steps), k)]
