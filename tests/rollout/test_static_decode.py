"""The static-cache decode loop (`rlhf.rollout.static_decode`): the same greedy tokens and the
same seeded samples as the dynamic loop whatever its plan (how often it looks, how coarse its
buckets and attention windows), few batch shapes, stops on interrupt like the dynamic loop."""

import pytest
import torch
from test_decode import PROMPTS, eos_biased_model
from transformers import AutoConfig

from rlhf.data.prompts import prompt_batch
from rlhf.rollout.base import SamplingParams
from rlhf.rollout.decode import decode
from rlhf.rollout.static_decode import DecodePlan, decode_static, supports_static_decode

PLANS = {
    "cpu": DecodePlan.for_device(torch.device("cpu")),
    "gpu": DecodePlan.for_device(torch.device("cuda")),  # only the plan: it runs on the CPU here
    "odd": DecodePlan(check_every=3, power_of_two_buckets=True, window_step=5, host_slots=True),
}
SAMPLINGS = {
    "greedy": SamplingParams(greedy=True, max_new_tokens=24),
    "sampled": SamplingParams(max_new_tokens=24),
    "filtered": SamplingParams(max_new_tokens=24, temperature=0.8, top_k=12, top_p=0.9),
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A model whose responses have mixed lengths, and a batch of 16 prompts."""
    model, tokenizer = eos_biased_model(tmp_path_factory.mktemp("static"), bias=2.0)
    batch = prompt_batch([{"prompt": text, "ground_truth": "0"} for text in PROMPTS * 2], tokenizer)
    return model, tokenizer, batch


def both_loops(model, tokenizer, batch, sampling, plan, interrupt_after=None, seed=7):
    """(dynamic, static) outputs for one seed; `interrupt_after` steps, if given, stops both."""
    outputs = []
    for loop, kwargs in ((decode, {}), (decode_static, {"plan": plan})):
        steps = []
        interrupt = None if interrupt_after is None else (lambda: steps.append(1) or len(steps) >= interrupt_after)
        torch.manual_seed(seed)
        outputs.append(loop(model, batch["prompt_ids"], batch["prompt_mask"], sampling, [tokenizer.eos_token_id],
                            tokenizer.pad_token_id, interrupt, **kwargs))
    return outputs


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_the_static_loop_draws_what_the_dynamic_loop_draws(mixed, plan, sampling):
    model, tokenizer, batch = mixed
    dynamic, static = both_loops(model, tokenizer, batch, SAMPLINGS[sampling], PLANS[plan])
    lengths = (dynamic.response_ids != tokenizer.pad_token_id).sum(dim=1)
    assert len(set(lengths.tolist())) > 2, "the test needs responses of mixed lengths"
    assert torch.equal(static.response_ids, dynamic.response_ids)
    torch.testing.assert_close(static.logprobs, dynamic.logprobs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("plan", PLANS)
def test_an_interrupt_stops_both_loops_after_the_same_step(mixed, plan):
    model, tokenizer, batch = mixed
    dynamic, static = both_loops(model, tokenizer, batch, SAMPLINGS["sampled"], PLANS[plan], interrupt_after=5)
    assert static.response_ids.shape[1] == dynamic.response_ids.shape[1] == 5
    assert torch.equal(static.response_ids, dynamic.response_ids)


def test_the_gpu_plan_changes_the_batch_shape_only_at_its_looks_and_only_to_powers_of_two(mixed):
    model, tokenizer, batch = mixed
    plan = PLANS["gpu"]
    rows_per_forward = []
    hook = model.model.register_forward_pre_hook(lambda module, args, kwargs: rows_per_forward.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    try:
        decode_static(model, batch["prompt_ids"], batch["prompt_mask"], SAMPLINGS["sampled"], [tokenizer.eos_token_id], tokenizer.pad_token_id, plan=plan)
    finally:
        hook.remove()
    # forward 0 is the prefill; forward k (k >= 1) feeds the token of step k - 1
    changes = [k for k in range(1, len(rows_per_forward)) if rows_per_forward[k] != rows_per_forward[k - 1]]
    assert changes, "the test needs rows to leave"
    assert all(k % plan.check_every == 0 for k in changes)
    assert all(rows & (rows - 1) == 0 for rows in rows_per_forward[changes[0]:])


def test_plans_buckets_and_windows():
    gpu = DecodePlan(check_every=8, power_of_two_buckets=True, window_step=64, host_slots=False)
    assert [gpu.bucket_size(running, 256) for running in (256, 200, 128, 127, 5, 1)] == [256, 256, 128, 128, 8, 1]
    assert gpu.bucket_size(100, 100) == 100  # never more rows than now
    assert [gpu.window(written, 150) for written in (6, 64, 65, 140)] == [64, 64, 128, 150]
    cpu = DecodePlan.for_device(torch.device("cpu"))
    assert cpu.bucket_size(37, 64) == 37 and cpu.window(37, 150) == 37


def test_eager_attention_takes_the_additive_mask(mixed):
    model, tokenizer, batch = mixed
    model.config._attn_implementation = "eager"
    try:
        assert supports_static_decode(model)
        dynamic, static = both_loops(model, tokenizer, batch, SAMPLINGS["sampled"], PLANS["gpu"])
    finally:
        model.config._attn_implementation = "sdpa"
    assert torch.equal(static.response_ids, dynamic.response_ids)


def test_sliding_window_and_flash_attention_models_use_the_dynamic_loop(mixed):
    model = mixed[0]
    assert supports_static_decode(model)
    mistral = AutoConfig.for_model("mistral", sliding_window=16, hidden_size=32, num_attention_heads=2, num_key_value_heads=2, num_hidden_layers=1, intermediate_size=64, vocab_size=50)
    holder = torch.nn.Module()
    holder.config = mistral
    mistral._attn_implementation = "sdpa"
    assert not supports_static_decode(holder)
    model.config._attn_implementation = "flash_attention_2"
    try:
        assert not supports_static_decode(model)
    finally:
        model.config._attn_implementation = "sdpa"
