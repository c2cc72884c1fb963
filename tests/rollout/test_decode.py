"""The dynamic sampling loop of the HF rollout engine (`rlhf.rollout.decode`): the same greedy
tokens as `transformers`' `generate`, rows that leave the batch at EOS without changing anyone's
response; and the token choice (`rlhf.rollout.sampling`): top-k / top-p filtering, inverse-CDF
draws from one uniform stream per row."""

import torch
from tiny_helpers import sharpen_weights
from transformers import GenerationConfig

from rlhf.data.prompts import prompt_batch
from rlhf.models.load import load_causal_lm, load_tokenizer
from rlhf.models.tiny import build_tiny_model
from rlhf.rollout.base import SamplingParams, response_mask_from_ids
from rlhf.rollout.decode import decode
from rlhf.rollout.sampling import RowUniforms, filter_logits, inverse_cdf, next_tokens

PROMPTS = ["0+14=", "84+25=", "49+14=", "98+14=", "7+3=", "12+34=", "5+5=", "61+2="]


def eos_biased_model(tmp_path, bias: float):
    """A tiny model with larger random weights (at the default init greedy decoding repeats one
    character) whose EOS logit is raised by `bias`: responses of mixed lengths."""
    path = build_tiny_model(tmp_path / "model", seed=0)
    model, tokenizer = load_causal_lm(str(path), torch.device("cpu")).eval(), load_tokenizer(str(path))
    sharpen_weights(model)
    model.lm_head.register_forward_hook(lambda module, inputs, output: output + bias * torch.nn.functional.one_hot(
        torch.tensor(tokenizer.eos_token_id), output.shape[-1]))
    return model, tokenizer


def test_greedy_tokens_equal_hf_generate_and_rows_stop_at_their_own_eos(tmp_path):
    model, tokenizer = eos_biased_model(tmp_path, bias=3.0)
    batch = prompt_batch([{"prompt": text, "ground_truth": "0"} for text in PROMPTS], tokenizer)
    eos = [tokenizer.eos_token_id]
    rows_per_forward = []
    hook = model.model.register_forward_pre_hook(lambda module, args, kwargs: rows_per_forward.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    decoded = decode(model, batch["prompt_ids"], batch["prompt_mask"], SamplingParams(greedy=True, max_new_tokens=12), eos, tokenizer.pad_token_id)
    hook.remove()
    config = GenerationConfig(do_sample=False, max_new_tokens=12, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    reference = model.generate(input_ids=batch["prompt_ids"], attention_mask=batch["prompt_mask"], generation_config=config)
    reference = reference[:, batch["prompt_ids"].shape[1] :]
    mask = response_mask_from_ids(decoded.response_ids, eos)
    lengths = mask.sum(dim=1)
    assert 1 < len(set(lengths.tolist())), "the test needs responses of different lengths"
    # finished rows leave the batch: forward i runs the rows still without EOS after i tokens
    assert rows_per_forward == [len(PROMPTS)] + [int((lengths > i).sum()) for i in range(1, len(rows_per_forward))]
    assert torch.equal(decoded.response_ids * mask, reference[:, : decoded.response_ids.shape[1]] * mask)
    assert (decoded.response_ids[mask == 0] == tokenizer.pad_token_id).all()


def test_a_row_gets_the_same_response_and_logprobs_alone_or_in_a_batch_whose_rows_leave(tmp_path):
    model, tokenizer = eos_biased_model(tmp_path, bias=3.0)
    batch = prompt_batch([{"prompt": text, "ground_truth": "0"} for text in PROMPTS], tokenizer)
    greedy, eos = SamplingParams(greedy=True, max_new_tokens=12), [tokenizer.eos_token_id]
    together = decode(model, batch["prompt_ids"], batch["prompt_mask"], greedy, eos, tokenizer.pad_token_id)
    for row, text in enumerate(PROMPTS):
        one = prompt_batch([{"prompt": text, "ground_truth": "0"}], tokenizer)
        alone = decode(model, one["prompt_ids"], one["prompt_mask"], greedy, eos, tokenizer.pad_token_id)
        width = alone.response_ids.shape[1]
        assert torch.equal(together.response_ids[row, :width], alone.response_ids[0])
        assert (together.response_ids[row, width:] == tokenizer.pad_token_id).all()
        torch.testing.assert_close(together.logprobs[row, :width], alone.logprobs[0], atol=1e-5, rtol=0)


def test_sampling_is_seeded_and_top_k_1_is_greedy(tmp_path):
    model, tokenizer = eos_biased_model(tmp_path, bias=0.5)
    batch = prompt_batch([{"prompt": text, "ground_truth": "0"} for text in PROMPTS], tokenizer)
    args = (batch["prompt_ids"], batch["prompt_mask"])
    eos, pad = [tokenizer.eos_token_id], tokenizer.pad_token_id
    torch.manual_seed(3)
    first = decode(model, *args, SamplingParams(max_new_tokens=8), eos, pad)
    torch.manual_seed(3)
    again = decode(model, *args, SamplingParams(max_new_tokens=8), eos, pad)
    assert torch.equal(first.response_ids, again.response_ids)
    top1 = decode(model, *args, SamplingParams(max_new_tokens=8, top_k=1, temperature=0.7), eos, pad)
    greedy = decode(model, *args, SamplingParams(max_new_tokens=8, greedy=True, temperature=0.7), eos, pad)
    assert torch.equal(top1.response_ids, greedy.response_ids)
    torch.testing.assert_close(top1.logprobs, greedy.logprobs)  # logprobs at the temperature, unfiltered


def test_filter_logits_keeps_the_top_k_and_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2, top_p=1.0)).tolist() == [[False, False, True, True]]
    # the nucleus: the smallest set whose mass reaches top_p (0.5 + 0.3 >= 0.7), in any order
    shuffled = logits[:, [2, 0, 3, 1]]
    assert torch.isinf(filter_logits(shuffled, top_k=0, top_p=0.7)).tolist() == [[True, False, True, False]]
    assert torch.isinf(filter_logits(logits, top_k=0, top_p=0.1)).tolist() == [[False, True, True, True]]  # the best token stays


def test_next_tokens_logprob_is_of_the_unfiltered_distribution_at_the_temperature():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    tokens, logprobs = next_tokens(logits, SamplingParams(greedy=True, temperature=0.5), torch.tensor([0.9]))
    assert tokens.tolist() == [0]
    torch.testing.assert_close(logprobs, (logits / 0.5).log_softmax(-1)[:, 0])


def test_inverse_cdf_picks_the_first_token_whose_cumulative_probability_reaches_the_uniform():
    probs = torch.tensor([[0.5, 0.25, 0.25]] * 5)
    assert inverse_cdf(probs, torch.tensor([1e-6, 0.5, 0.5001, 0.75, 1.0])).tolist() == [0, 0, 1, 1, 2]
    gaps = torch.tensor([[0.0, 0.5, 0.0, 0.5]] * 4)  # a token of probability 0 is never drawn
    assert inverse_cdf(gaps, torch.tensor([1e-9, 0.5, 0.5001, 1.0])).tolist() == [1, 1, 3, 3]
    unnormalised = torch.tensor([[2.0, 6.0]] * 2)  # filtered rows need not sum to 1
    assert inverse_cdf(unnormalised, torch.tensor([0.25, 0.2501])).tolist() == [0, 1]


def test_row_uniforms_draw_the_categorical_distribution_and_one_stream_per_seed():
    torch.manual_seed(0)
    draws = RowUniforms(20_000, torch.device("cpu")).next_step()
    assert 0.0 < draws.min() and draws.max() <= 1.0
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    counts = torch.bincount(inverse_cdf(probs.expand(len(draws), 4), draws), minlength=4) / len(draws)
    torch.testing.assert_close(counts, probs, atol=0.015, rtol=0)  # 4.5 standard errors at n = 20,000
    torch.manual_seed(0)
    assert torch.equal(RowUniforms(20_000, torch.device("cpu")).next_step(), draws)
