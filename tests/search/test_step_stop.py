"""The step stop (`rlhf.rollout.step_stop.StepStop`): where a step ends, on a byte-level toy
tokenizer whose tokens hold several characters (a delimiter inside one token, half UTF-8
characters), the characters a delimiter can end with (`rlhf.rollout.delimiter_tokens`), and
the two decode loops with the stop: the same tokens and the same step ends whatever the plan."""

import re

import pytest
import torch
from step_models import step_model

from rlhf.data.prompts import prompt_batch
from rlhf.models.tokenizer import build_char_tokenizer
from rlhf.rewards.steps import BLANK_LINE, split_steps
from rlhf.rollout.base import SamplingParams
from rlhf.rollout.decode import decode
from rlhf.rollout.delimiter_tokens import candidate_token_ids, match_end_test
from rlhf.rollout.static_decode import DecodePlan, decode_static
from rlhf.rollout.step_stop import DELIMITER, LENGTH, StepStop

# token id -> bytes: several characters per token, as real tokenizers have, and "é" (c3 a9) cut in two
VOCAB = [b"Hello", b".\n\n", b"\n", b"\n\n", b" ", b"x", b"\nThe", b"\xc3", b"\xa9", b"Step", b" 1:", b"!\n \n", b"a"]
ID = {piece: token for token, piece in enumerate(VOCAB)}


class BytesTokenizer:
    """Decodes like a byte-level BPE: a token is bytes, a text is their UTF-8 decoding, with
    U+FFFD for a cut character."""

    def __len__(self):
        return len(VOCAB)

    def batch_decode(self, sequences, skip_special_tokens=True):
        return [b"".join(VOCAB[token] for token in tokens).decode("utf-8", errors="replace") for tokens in sequences]


def stops_at(pieces, delimiter=None, limit=100):
    """Feed one row its tokens one by one; (how many were fed when it ended, why) or None."""
    stop = StepStop(BytesTokenizer(), [limit], delimiter)
    for count, piece in enumerate(pieces, start=1):
        if stop.feed([0], [ID[piece]])[0]:
            assert len(stop.tokens[0]) == count
            return count, stop.reasons[0]
    return None


def test_a_delimiter_inside_one_token_ends_the_step_at_that_token():
    assert stops_at([b"Hello", b".\n\n", b"x"]) == (2, DELIMITER)


def test_a_delimiter_over_several_tokens_ends_the_step_at_the_token_that_completes_it():
    assert stops_at([b"Hello", b"\n", b" ", b"x", b"\n", b"\n", b"x"]) == (6, DELIMITER)
    assert stops_at([b"Hello", b"!\n \n"]) == (2, DELIMITER)  # a regex: whitespace between the newlines


def test_leading_blank_lines_are_no_step():
    assert stops_at([b"\n\n", b" ", b"\n", b"Hello", b"\n\n"]) == (5, DELIMITER)
    assert stops_at([b"\n\n", b"\n\n", b" "]) is None


def test_the_token_that_completes_the_delimiter_is_kept_whole():
    # "\nThe" completes "Hello\n\nThe": the start of the next line stays in this step
    assert stops_at([b"Hello", b"\n", b"\nThe", b"x"]) == (3, DELIMITER)


def test_half_a_character_waits_for_its_other_half():
    # a delimiter ending with "é": the first byte alone decodes to U+FFFD and matches nothing
    assert stops_at([b"Hello", b" ", b"\xc3", b"\xa9", b"x"], delimiter="\u00e9") == (4, DELIMITER)
    assert stops_at([b"\xc3", b"\xa9", b"Hello", b"\xc3", b"\xa9"], delimiter="\u00e9") == (5, DELIMITER)


def test_a_custom_delimiter_regex():
    assert stops_at([b"Step", b" 1:", b"Hello", b"\n\n", b"Step", b" 1:"], delimiter=r"Step \d:") == (6, DELIMITER)
    # a lookahead ends the step at the token that starts the next one, which stays in this step
    assert stops_at([b"Step", b" 1:", b"x", b"Step", b"x"], delimiter=r"(?=Step)") == (4, DELIMITER)


def test_the_length_limit_ends_a_row_even_on_its_delimiter_token():
    assert stops_at([b"x", b"x", b"x", b"x"], limit=3) == (3, LENGTH)
    assert stops_at([b"Hello", b".\n\n"], limit=2) == (2, LENGTH)


def test_rows_of_one_call_keep_their_own_text():
    stop = StepStop(BytesTokenizer(), [10, 10, 10])
    assert stop.feed([0, 1, 2], [ID[b"Hello"], ID[b"\n\n"], ID[b"x"]]) == [False, False, False]
    assert stop.feed([0, 2], [ID[b".\n\n"], ID[b"\n"]]) == [True, False]
    assert stop.feed([1, 2], [ID[b"x"], ID[b"\n"]]) == [False, True]
    assert stop.reasons == [DELIMITER, None, DELIMITER]
    with pytest.raises(ValueError, match="row 0 already ended"):
        stop.feed([0], [ID[b"x"]])


def test_the_hook_takes_and_returns_tensors():
    stop = StepStop(BytesTokenizer(), [10, 10])
    ended = stop(torch.tensor([1, 0]), torch.tensor([ID[b"Hello"], ID[b"x"]]))
    assert ended.dtype == torch.bool and ended.tolist() == [False, False]
    assert stop(torch.tensor([1]), torch.tensor([ID[b".\n\n"]])).tolist() == [True]


@pytest.mark.parametrize("delimiter, message", [("(", "not a valid regular expression"), (r"\s*", "matches the empty text")])
def test_a_bad_delimiter_is_refused_with_its_reason(delimiter, message):
    with pytest.raises(ValueError, match=message):
        StepStop(BytesTokenizer(), [1], delimiter)


def test_a_step_ends_where_split_steps_would_cut_the_text():
    # the text up to each step end holds exactly one more cut point for the PRM's step splitter
    text, ends = "", []
    stop = StepStop(BytesTokenizer(), [100])
    for piece in [b"Hello", b"\n", b"\n", b"Hello", b".\n\n", b"a", b"!\n \n", b"x"]:
        text += piece.decode()
        if stop.feed([0], [ID[piece]])[0]:
            ends.append(text)
            stop = StepStop(BytesTokenizer(), [100])
    assert ends == ["Hello\n\n", "Hello\n\nHello.\n\n", "Hello\n\nHello.\n\na!\n \n"]
    assert [len(split_steps(end)) for end in ends] == [1, 2, 3]


@pytest.mark.parametrize("delimiter, ends_with, not_ending", [
    (None, "\n", " x."),
    (r"\n", "\n", " x"),
    (r"Step \d+:", ":", "Step1 "),
    (r"[.!?]\s*\n", "\n", ".!? "),
    (r"a|bc", "ac", "b"),
    (r"x+", "x", "y"),
    (r"ab?", "ab", "c"),
    (r"(?:\n\n|END)", "\nD", "EN"),
    (r"[0-9a-c]", "05ac", "d"),
    (r"\d", "7", "a"),
])
def test_the_characters_a_delimiter_can_end_with(delimiter, ends_with, not_ending):
    test = match_end_test(delimiter)
    assert test is not None
    assert all(test(ch) for ch in ends_with) and not any(test(ch) for ch in not_ending)


@pytest.mark.parametrize("delimiter", [r"(?=Step)", r"\n$", r"(?i)end", r"[^a]", r"\n.", r"(a)\1"])
def test_delimiters_beyond_the_analysis_have_no_end_test(delimiter):
    assert match_end_test(delimiter) is None


def test_the_candidate_tokens_of_a_blank_line_are_those_holding_a_newline():
    assert candidate_token_ids(BytesTokenizer(), None) == [ID[b".\n\n"], ID[b"\n"], ID[b"\n\n"], ID[b"\nThe"], ID[b"\xc3"], ID[b"\xa9"], ID[b"!\n \n"]]
    tokenizer = build_char_tokenizer()
    assert candidate_token_ids(tokenizer, BLANK_LINE) == tokenizer("\n", add_special_tokens=False)["input_ids"]
    assert candidate_token_ids(tokenizer, r"(?=Step)") is None


PLANS = {
    "cpu": DecodePlan.for_device(torch.device("cpu")),
    "gpu": DecodePlan.for_device(torch.device("cuda")),  # only the plan: it runs on the CPU here
    "odd": DecodePlan(check_every=3, power_of_two_buckets=True, window_step=5, host_slots=True),
}
PROMPTS = ["0+14=", "84+25=", "49+14=", "98+14=", "7+3=", "12+34=", "5+5=", "61+2="] * 2


@pytest.fixture(scope="module")
def steps_batch(tmp_path_factory):
    """A model writing lines of 5 characters and blank lines, with random EOS, and 16 prompts."""
    model, tokenizer = step_model(tmp_path_factory.mktemp("stop") / "model", eos_bias=3.0)
    return model, tokenizer, prompt_batch([{"prompt": text, "ground_truth": "0"} for text in PROMPTS], tokenizer)


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("sampling", [SamplingParams(max_new_tokens=16), SamplingParams(max_new_tokens=16, temperature=0.7, top_k=20),
                                      SamplingParams(greedy=True, max_new_tokens=16)], ids=["sampled", "filtered", "greedy"])
def test_both_loops_end_the_same_rows_at_the_same_tokens_with_a_stop(steps_batch, plan, sampling):
    model, tokenizer, batch = steps_batch
    limits = [16 if row % 3 else 4 for row in range(len(PROMPTS))]  # some rows end by their own limit
    outputs, stops = [], []
    for loop, kwargs in ((decode, {}), (decode_static, {"plan": PLANS[plan]})):
        stops.append(StepStop(tokenizer, limits))
        torch.manual_seed(3)
        outputs.append(loop(model, batch["prompt_ids"], batch["prompt_mask"], sampling, [tokenizer.eos_token_id],
                            tokenizer.pad_token_id, stop=stops[-1], **kwargs))
    (dynamic, static), (dynamic_stop, static_stop) = outputs, stops
    assert torch.equal(static.response_ids, dynamic.response_ids)
    torch.testing.assert_close(static.logprobs, dynamic.logprobs, atol=1e-5, rtol=0)
    assert static_stop.tokens == dynamic_stop.tokens and static_stop.reasons == dynamic_stop.reasons
    reasons = set(dynamic_stop.reasons)
    assert {DELIMITER, LENGTH} <= reasons and (None in reasons or sampling.greedy), "the test needs every kind of end"
    for row, tokens in enumerate(dynamic_stop.tokens):
        response = dynamic.response_ids[row].tolist()
        # the row's tokens, then EOS (a row the stop did not end) or padding only
        assert response[: len(tokens)] == tokens
        if dynamic_stop.reasons[row] is None:
            assert response[len(tokens)] == tokenizer.eos_token_id
        assert all(token == tokenizer.pad_token_id for token in response[len(tokens) + (dynamic_stop.reasons[row] is None):])
        text = tokenizer.decode(tokens)
        if dynamic_stop.reasons[row] == DELIMITER:
            assert text.endswith("\n\n") and re.search(BLANK_LINE, text.strip()) is None
        else:
            assert re.search(BLANK_LINE, text.strip()) is None

