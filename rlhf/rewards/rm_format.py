"""The text a reward model reads, and where in its tokens the markers of the steps are.

A reward model was trained on text of one shape, which the recipe reproduces with either

- `template`: a format string with `{prompt}` and a body field (`{response}` for an ORM,
  `{steps}` for a PRM), e.g. "Question: {prompt}\\nAnswer: {response}"; or
- `chat_template: true`: the RM tokenizer's own chat template over the conversation
  [system (`system_prompt`, optional), user = prompt, assistant = body].

The prompt is the dataset's prompt (before the policy's chat template). A PRM's body is its
steps, each followed by a marker (a separator or tag token) and joined by `joiner`:
"step 1<m>" + joiner + "step 2<m>" ...

Locating markers. The whole formatted text is tokenized in one call, exactly as the RM saw
such text in training, and each marker is found through the fast tokenizer's character
offsets: its position is the token that holds the marker's last character. (The other way,
tokenizing the pieces separately and concatenating the ids, gives exact positions for free
but changes the tokens at the piece boundaries for tokenizers that add a prefix space to
every piece, such as SentencePiece ones, so the PRM would read text it never saw.) When the
token there is not the marker's id, the marker merged with neighbouring text into another
token; it is still read there, and counted (the PRM source logs `markers_merged`).
"""

from __future__ import annotations

import string
from typing import Sequence

SENTINEL = "\x00rlhf-reward-body\x00"
"""Stands for the body while a chat template renders, to find where the body lands."""


class RMFormatter:
    """Renders (prompt, body) for one reward model and tokenizes it with character offsets."""

    def __init__(self, tokenizer, body_field: str, *, template: str | None = None, chat_template: bool = False,
                 system_prompt: str | None = None):
        """`body_field`: 'response' (ORM) or 'steps' (PRM). Without `template` and
        `chat_template`, the template is "{prompt}{<body_field>}"."""
        self.tokenizer, self.body_field = tokenizer, body_field
        self.chat_template, self.system_prompt = bool(chat_template), system_prompt
        if chat_template and template is not None:
            raise ValueError("kwargs.template and kwargs.chat_template: give one of them, not both")
        if chat_template and not getattr(tokenizer, "chat_template", None):
            raise ValueError("kwargs.chat_template: the reward model's tokenizer has no chat template; use kwargs.template")
        if system_prompt is not None and not chat_template:
            raise ValueError("kwargs.system_prompt: only used with chat_template: true")
        self.pieces = _parse_template("{prompt}{" + body_field + "}" if template is None else template, body_field)

    def render(self, prompt: str, body: str) -> tuple[str, int]:
        """(the formatted text, the character where `body` starts in it)."""
        if self.chat_template:
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": SENTINEL}]
            if self.system_prompt is not None:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            rendered = self.tokenizer.apply_chat_template(messages, tokenize=False)
            if rendered.count(SENTINEL) != 1:
                raise ValueError("kwargs.chat_template: the reward model's chat template does not keep the assistant message verbatim")
            start = rendered.index(SENTINEL)
            return rendered[:start] + body + rendered[start + len(SENTINEL) :], start
        parts, start = [], 0
        for literal, field in self.pieces:
            parts.append(literal)
            if field == self.body_field:
                start = sum(map(len, parts))
            parts.append({"prompt": prompt, self.body_field: body}.get(field, ""))
        return "".join(parts), start

    def encode(self, prompts: Sequence[str], bodies: Sequence[str],
               marker_ends: Sequence[Sequence[int]] | None = None) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids of each formatted text, and the token positions of its markers.

        Args:
            prompts, bodies: N texts each.
            marker_ends: per text, the exclusive character ends of the markers inside its body
                (None: no markers).
        Returns:
            (N lists of ids, N lists of positions, one per marker). Special tokens (a BOS) are
            added by the tokenizer for a `template`; a chat template writes its own.
        """
        rendered = [self.render(prompt, body) for prompt, body in zip(prompts, bodies)]
        encoded = self.tokenizer([text for text, _ in rendered], add_special_tokens=not self.chat_template,
                                 return_offsets_mapping=True)
        ends = marker_ends if marker_ends is not None else [[] for _ in rendered]
        positions = [tokens_at_chars(offsets, [start + end - 1 for end in row_ends])
                     for (_, start), offsets, row_ends in zip(rendered, encoded["offset_mapping"], ends)]
        return [list(ids) for ids in encoded["input_ids"]], positions


def tokens_at_chars(offsets: Sequence[tuple[int, int]], chars: Sequence[int]) -> list[int]:
    """For each of the ascending character indices `chars`, the index of the token whose
    offsets (start, end) hold it (start <= c < end); added special tokens have empty spans
    and hold nothing. A character no token holds (whitespace some tokenizers drop) maps to the
    next token that starts after it."""
    positions, token = [], 0
    for char in chars:
        while token < len(offsets) - 1 and offsets[token][1] <= char:
            token += 1
        positions.append(token)
    return positions


def _parse_template(template: str, body_field: str) -> list[tuple[str, str | None]]:
    """(literal text, field name or None) pieces of `template`; it must use `{prompt}` at most
    once and `{<body_field>}` exactly once, with no other fields, conversions or specs."""
    try:
        pieces = [(literal, field, spec, conversion) for literal, field, spec, conversion in string.Formatter().parse(template)]
    except ValueError as error:
        raise ValueError(f"kwargs.template: {template!r} is not a valid format string: {error}") from None
    fields = [field for _, field, _, _ in pieces if field is not None]
    bad = [field for field in fields if field not in ("prompt", body_field)]
    if bad or any(spec or conversion for _, _, spec, conversion in pieces):
        raise ValueError(f"kwargs.template: {template!r} may only contain the fields {{prompt}} and {{{body_field}}}, "
                         f"without format specs (found {bad or 'a spec'}); write a literal brace as {{{{ or }}}}")
    if fields.count(body_field) != 1 or fields.count("prompt") > 1:
        raise ValueError(f"kwargs.template: {template!r} must contain {{{body_field}}} exactly once (and {{prompt}} at most once)")
    return [(literal, field) for literal, field, _, _ in pieces]
