"""Map character positions of a response's text back to its tokens.

A reward source sees `response_text` (the policy tokenizer's decode of the valid response
tokens, special tokens skipped) and finds things in it by character: where each reasoning step
ends. Token-level rewards need the *token* where that character lies. Tokenizers differ in how
characters group into tokens (one char per token, BPE merges spanning several chars, byte
pieces of one character), so we never re-tokenize the text; instead we decode prefixes of the
very token ids the policy generated: the step that ends at character `c` ends at the first
token `t` whose decoded prefix `ids[: t + 1]` has at least `c` characters.

Decoded prefix lengths grow with the prefix, so `t` is found by binary search: O(log R) decodes
per position, O(K log R) for the K step ends of a response (and each search starts where the
previous one ended), instead of decoding all R prefixes. Caveat: a prefix ending inside a
multi-byte character decodes to a replacement character, which can make lengths locally
non-monotone by a character; the token found is then off by at most that piece.
"""

from __future__ import annotations

from typing import Sequence

import torch


def valid_ids(response_ids_row: torch.Tensor, response_mask_row: torch.Tensor | None = None) -> list[int]:
    """The ids of a response's valid tokens (mask 1), in order; all of them without a mask."""
    if response_mask_row is None:
        return response_ids_row.tolist()
    return response_ids_row[response_mask_row.bool()].tolist()


def token_index_of_char(tokenizer, response_ids_row: torch.Tensor | Sequence[int], char_end: int,
                        response_mask_row: torch.Tensor | None = None) -> int:
    """Index of the first valid response token whose decoded prefix reaches `char_end` chars.

    Args:
        tokenizer: the tokenizer that decoded the response (`decode(ids, skip_special_tokens=True)`
            must give the response text, as the rollout engine produced it).
        response_ids_row: [R] token ids of one response (right-padded), or a list of ids.
        char_end: a character count of the response text (a step's exclusive end), >= 1.
        response_mask_row: [R] 1 on valid tokens; None when every id is valid.
    Returns:
        t in [0, n) for n valid tokens, the token holding character `char_end − 1`; n − 1 when
        the whole text is shorter than `char_end`; 0 for a response without valid tokens.
    """
    ids = valid_ids(torch.as_tensor(response_ids_row), response_mask_row)
    return token_indices_of_chars(tokenizer, ids, [char_end])[0]


def token_indices_of_chars(tokenizer, ids: Sequence[int], char_ends: Sequence[int]) -> list[int]:
    """:func:`token_index_of_char` for several ascending `char_ends` of the valid token ids `ids`
    of one response; each binary search starts at the previous answer."""
    answers, low = [], 1
    for char_end in char_ends:
        low = _first_prefix_reaching(tokenizer, ids, char_end, low)
        answers.append(max(low - 1, 0))
    return answers


def _first_prefix_reaching(tokenizer, ids: Sequence[int], char_end: int, low: int) -> int:
    """The smallest k in [low, n] with len(decode(ids[:k])) >= char_end (n if none does)."""
    high = len(ids)
    while low < high:
        middle = (low + high) // 2
        if len(tokenizer.decode(list(ids[:middle]), skip_special_tokens=True)) >= char_end:
            high = middle
        else:
            low = middle + 1
    return low
