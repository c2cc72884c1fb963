"""T1's dynamic anchor: `RefWorker.follow` moves the reference towards the policy."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from rlhf.engines.base import OptimConfig  # noqa: E402
from rlhf.engines.torch_engine import TorchEngine  # noqa: E402
from rlhf.models.load import load_causal_lm  # noqa: E402
from rlhf.workers.actor import ActorWorker, PolicyLossConfig  # noqa: E402
from rlhf.workers.ref import RefWorker  # noqa: E402

@pytest.fixture
def policy_and_ref(tiny_path):
    """A policy whose every weight differs from the reference's (its copy before the policy
    was perturbed), so that each weight shows where `follow` put it."""
    reference = load_causal_lm(tiny_path, torch.device("cpu"))
    policy = copy.deepcopy(reference)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in policy.parameters():
            param.add_(0.5 * torch.randn(param.shape, generator=generator))
    return policy, RefWorker(reference, temperature=0.8, micro_batch_size=2)


def test_ema_zero_copies_the_policy(policy_and_ref, batch):
    policy, ref = policy_and_ref
    actor = ActorWorker(TorchEngine(policy, OptimConfig(lr=1e-3)), PolicyLossConfig(micro_batch_size=2), temperature=0.8, seed=0)
    assert not torch.allclose(ref.compute_logprobs(batch), actor.compute_logprobs(batch), atol=1e-3)
    ref.follow(actor.named_weights(), ema=0.0)
    own = dict(ref.model.named_parameters())
    for name, param in policy.named_parameters():
        assert torch.equal(own[name], param) and own[name].data_ptr() != param.data_ptr(), name
    mask = batch["response_mask"].bool()
    assert torch.equal(ref.compute_logprobs(batch)[mask], actor.compute_logprobs(batch)[mask])
    # the reference stays frozen
    assert not any(param.requires_grad for param in ref.model.parameters())


def test_ema_mixes_each_weight(policy_and_ref):
    policy, ref = policy_and_ref
    before = {name: param.clone() for name, param in ref.model.named_parameters()}
    ref.follow(policy.named_parameters(), ema=0.9)
    for name, param in ref.model.named_parameters():
        expected = 0.9 * before[name] + 0.1 * dict(policy.named_parameters())[name]
        assert torch.allclose(param, expected, atol=1e-6), name


def test_ema_twice_compounds(policy_and_ref):
    policy, ref = policy_and_ref
    name, start = next((n, p.clone()) for n, p in ref.model.named_parameters())
    target = dict(policy.named_parameters())[name].detach()
    ref.follow(policy.named_parameters(), ema=0.5)
    ref.follow(policy.named_parameters(), ema=0.5)
    # a quarter of the way left: 0.25 * ref + 0.75 * policy
    assert torch.allclose(dict(ref.model.named_parameters())[name], 0.25 * start + 0.75 * target, atol=1e-6)


def test_unknown_weight_name_raises(policy_and_ref):
    _, ref = policy_and_ref
    with pytest.raises(KeyError, match="no weight 'head.weight'"):
        ref.follow([("head.weight", torch.zeros(3))], ema=0.0)
