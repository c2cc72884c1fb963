"""Splitting responses into steps, and mapping a character of a response to its token: with the
character tokenizer, and with a BPE tokenizer trained here whose tokens span several characters."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from rlhf.models.tokenizer import build_char_tokenizer
from rlhf.rewards.offsets import token_index_of_char, token_indices_of_chars
from rlhf.rewards.steps import split_steps

# ---- split_steps ---------------------------------------------------------------------------


def pieces(text, pattern=None):
    return [text[start:end] for start, end in split_steps(text, pattern)]


def test_default_splits_on_blank_lines_and_trims_whitespace():
    text = "First, 2+2=4.\n\nThen 4*3=12. \n \n\n  So 12.\n"
    assert split_steps(text) == [(0, 13), (15, 27), (34, 40)]
    assert pieces(text) == ["First, 2+2=4.", "Then 4*3=12.", "So 12."]


def test_a_single_newline_does_not_split():
    assert pieces("a\nb\n\nc") == ["a\nb", "c"]


def test_empty_steps_are_dropped_and_a_blank_text_has_none():
    assert pieces("\n\n\n\na\n\n \n\n") == ["a"]
    assert split_steps("") == [] and split_steps("  \n\n ") == []
    assert split_steps("one step") == [(0, 8)]


def test_regex_splits_on_its_matches():
    assert pieces("x=1; y=2;z=3", r";\s*") == ["x=1", "y=2", "z=3"]


def test_zero_width_regex_keeps_the_text():
    text = "Step 1: add. Step 2: carry. Step 3: done."
    assert pieces(text, r"(?=Step \d)") == ["Step 1: add.", "Step 2: carry.", "Step 3: done."]
    assert pieces("123", r"(?<=.)") == ["1", "2", "3"]


# ---- token_index_of_char: one character per token -------------------------------------------


def test_char_tokenizer_maps_character_ends_to_their_token():
    tokenizer = build_char_tokenizer()
    text = "ab\n\ncd"
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert [token_index_of_char(tokenizer, ids, end) for end in range(1, len(text) + 1)] == list(range(len(text)))


def test_only_valid_tokens_count_and_eos_is_skipped():
    tokenizer = build_char_tokenizer()
    text_ids = tokenizer("12\n\n34", add_special_tokens=False)["input_ids"]
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    ids = torch.tensor(text_ids + [eos, pad, pad])
    mask = torch.tensor([1] * (len(text_ids) + 1) + [0, 0])
    assert token_index_of_char(tokenizer, ids, 2, mask) == 1
    assert token_index_of_char(tokenizer, ids, 6, mask) == 5  # the last text token, not the EOS
    assert token_index_of_char(tokenizer, ids, 99, mask) == 6  # past the text: the last valid token


def test_response_without_valid_tokens_gives_zero():
    tokenizer = build_char_tokenizer()
    assert token_index_of_char(tokenizer, torch.tensor([0, 0]), 1, torch.tensor([0, 0])) == 0


# ---- token_index_of_char: BPE tokens spanning several characters ----------------------------

CORPUS = ["the answer is 12", "the answer is 345", "then the sum is 12 plus 345", "answer: the sum"] * 20


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """A byte-level BPE with merges, trained on a few strings (no download)."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>")


def linear_scan(tokenizer, ids, char_end):
    """The reference: the first token whose decoded prefix reaches `char_end`, by decoding every prefix."""
    for index in range(len(ids)):
        if len(tokenizer.decode(ids[: index + 1], skip_special_tokens=True)) >= char_end:
            return index
    return len(ids) - 1


def test_bpe_tokens_span_several_characters(bpe_tokenizer):
    text = "the answer is 345"
    ids = bpe_tokenizer(text)["input_ids"]
    pieces_ = [bpe_tokenizer.decode([i]) for i in ids]
    assert len(ids) < len(text) and "".join(pieces_) == text
    # every character of a token maps to that token
    expected = [index for index, piece in enumerate(pieces_) for _ in piece]
    assert [token_index_of_char(bpe_tokenizer, ids, end) for end in range(1, len(text) + 1)] == expected


@settings(max_examples=40, deadline=None)
@given(words=st.lists(st.sampled_from(["the", "answer", "is", "12", "345", "sum", "plus", "x", "\n\n", " ", ":"]), min_size=1, max_size=12))
def test_binary_search_matches_a_linear_scan(bpe_tokenizer, words):
    text = " ".join(words)
    ids = bpe_tokenizer(text)["input_ids"]
    ends = list(range(1, len(text) + 2))
    assert token_indices_of_chars(bpe_tokenizer, ids, ends) == [linear_scan(bpe_tokenizer, ids, end) for end in ends]


class CountingTokenizer:
    """Counts the decodes a search makes."""

    def __init__(self, tokenizer):
        self.tokenizer, self.decodes = tokenizer, 0

    def decode(self, ids, skip_special_tokens=False):
        self.decodes += 1
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)


def test_search_decodes_log_many_prefixes():
    tokenizer = CountingTokenizer(build_char_tokenizer())
    ids = tokenizer.tokenizer("x" * 1000, add_special_tokens=False)["input_ids"]
    assert token_indices_of_chars(tokenizer, ids, [100, 500, 900]) == [99, 499, 899]
    assert tokenizer.decodes <= 3 * 11  # ceil(log2 1000) + 1 each, not 1000
