"""The rollout engine's `rollout_logprobs` equal the trainer's logprobs of the same tokens, and
the weight-sync probe check passes on a shared module and catches a corrupted copy."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from rlhf.controller.sync_check import WeightSyncError, check_weight_sync  # noqa: E402
from rlhf.data.prompts import prompt_batch  # noqa: E402
from rlhf.engines.base import OptimConfig  # noqa: E402
from rlhf.engines.torch_engine import TorchEngine  # noqa: E402
from rlhf.models.load import load_causal_lm, load_tokenizer  # noqa: E402
from rlhf.models.tiny import build_tiny_model  # noqa: E402
from rlhf.rollout.base import SamplingParams  # noqa: E402
from rlhf.rollout.hf import HFRolloutEngine  # noqa: E402
from rlhf.workers.actor import ActorWorker, PolicyLossConfig  # noqa: E402
from tiny_helpers import sharpen_weights  # noqa: E402

PROMPTS = ["1+2=", "10+20+30=", "7+45=", "999+1=", "5+5=", "12+345="]  # lengths differ: left padding


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0))


@pytest.fixture(scope="module")
def tokenizer(tiny_path):
    return load_tokenizer(tiny_path)


@pytest.fixture
def model(tiny_path):
    """Sharper weights than the default init, so logprobs are far from uniform."""
    return sharpen_weights(load_causal_lm(tiny_path, torch.device("cpu")))


def make_actor(model, temperature: float) -> ActorWorker:
    return ActorWorker(TorchEngine(model, OptimConfig(lr=1e-3)), PolicyLossConfig(micro_batch_size=4), temperature=temperature, seed=0)


def prompts(tokenizer):
    return prompt_batch([{"prompt": text, "ground_truth": "0"} for text in PROMPTS], tokenizer)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("micro_batch_size", [0, 4])
def test_rollout_logprobs_equal_trainer_logprobs(model, tokenizer, temperature, micro_batch_size):
    torch.manual_seed(0)
    sampling = SamplingParams(temperature=temperature, top_k=20, top_p=0.95, max_new_tokens=12, logprobs=True)
    out = HFRolloutEngine(model, tokenizer, micro_batch_size=micro_batch_size).generate(prompts(tokenizer), sampling)
    rollout_logprobs, mask = out["rollout_logprobs"], out["response_mask"]
    assert rollout_logprobs.shape == out["response_ids"].shape and rollout_logprobs.dtype == torch.float32
    assert (rollout_logprobs[mask == 0] == 0).all() and (rollout_logprobs[mask == 1] < 0).all()
    trainer_logprobs = make_actor(model, temperature).compute_logprobs(out)
    gap = ((rollout_logprobs - trainer_logprobs) * mask).abs().max().item()
    assert gap < 1e-5, gap


def test_rollout_logprobs_only_when_asked(model, tokenizer):
    # without `logprobs` generate keeps no per-step logits (they cost [B, R, V] memory per call)
    out = HFRolloutEngine(model, tokenizer).generate(prompts(tokenizer), SamplingParams(max_new_tokens=6))
    assert "rollout_logprobs" not in out


def test_greedy_rollout_logprobs_use_the_sampling_temperature(model, tokenizer):
    batch = prompts(tokenizer)
    engine = HFRolloutEngine(model, tokenizer)
    plain = engine.generate(batch, SamplingParams(greedy=True, max_new_tokens=8, logprobs=True))
    sharp = engine.generate(batch, SamplingParams(greedy=True, temperature=0.5, max_new_tokens=8, logprobs=True))
    assert torch.equal(plain["response_ids"], sharp["response_ids"])
    assert torch.allclose(make_actor(model, 0.5).compute_logprobs(sharp), sharp["rollout_logprobs"], atol=1e-5)
    assert not torch.allclose(plain["rollout_logprobs"], sharp["rollout_logprobs"])


def test_sync_check_passes_on_the_shared_module(model, tokenizer):
    sampling = SamplingParams(temperature=0.7, max_new_tokens=10)
    gap = check_weight_sync(HFRolloutEngine(model, tokenizer), make_actor(model, 0.7), prompts(tokenizer), sampling, tolerance=1e-4)
    assert 0.0 <= gap < 1e-5


def test_sync_check_catches_a_corrupted_copy(model, tokenizer):
    """The rollout engine holds a copy whose sync went wrong (one weight scaled)."""
    stale = copy.deepcopy(model)
    with torch.no_grad():
        stale.model.layers[0].mlp.down_proj.weight.mul_(1.5)
    sampling = SamplingParams(max_new_tokens=10)
    with pytest.raises(WeightSyncError, match=r"rollout engine HFRolloutEngine vs trainer TorchEngine .* by max [\d.e-]+, mean [\d.e-]+") as error:
        check_weight_sync(HFRolloutEngine(stale, tokenizer), make_actor(model, 1.0), prompts(tokenizer), sampling, tolerance=1e-3)
    assert isinstance(error.value, RuntimeError)
    # a real sync repairs it
    rollout = HFRolloutEngine(stale, tokenizer)
    assert rollout.update_weights(model.named_parameters()) > 0
    assert check_weight_sync(rollout, make_actor(model, 1.0), prompts(tokenizer), sampling, tolerance=1e-3) < 1e-5
