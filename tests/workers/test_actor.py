"""The actor on a tiny model: log-probabilities against a plain forward pass, and gradient
accumulation over micro-batches against one full mini-batch."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from rlhf.data.batch import Batch  # noqa: E402
from rlhf.engines.base import OptimConfig  # noqa: E402
from rlhf.engines.torch_engine import TorchEngine  # noqa: E402
from rlhf.workers.actor import ActorWorker, PolicyLossConfig  # noqa: E402
from update_checks import assert_same_update, max_weight_difference  # noqa: E402

def make_actor(model, loss: PolicyLossConfig, temperature: float = 1.0, seed: int = 0, grad_clip: float = 1.0) -> ActorWorker:
    engine = TorchEngine(model, OptimConfig(lr=1e-3, grad_clip=grad_clip))
    return ActorWorker(engine, loss, temperature=temperature, seed=seed)


def manual_logprobs(model, prompt: list[int], response: list[int], temperature: float) -> torch.Tensor:
    """log p(response | prompt) per token from one unpadded forward pass."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float() / temperature
    logprobs = torch.log_softmax(logits, dim=-1)
    positions = torch.arange(len(prompt) - 1, len(prompt) + len(response) - 1)
    return logprobs[positions, torch.tensor(response)]


def unpadded(batch: Batch, row: int) -> tuple[list[int], list[int]]:
    prompt = batch["prompt_ids"][row][batch["prompt_mask"][row] == 1].tolist()
    response = batch["response_ids"][row][batch["response_mask"][row] == 1].tolist()
    return prompt, response


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("micro_batch_size", [1, 4, 64])
def test_compute_logprobs_matches_unpadded_forward(tokenizer_and_model, batch, temperature, micro_batch_size):
    _, model = tokenizer_and_model
    actor = make_actor(model, PolicyLossConfig(micro_batch_size=micro_batch_size), temperature=temperature)
    logprobs = actor.compute_logprobs(batch)
    assert logprobs.shape == batch["response_ids"].shape and logprobs.dtype == torch.float32
    assert (batch["prompt_mask"] == 0).any() and (batch["response_mask"] == 0).any()  # padding on both sides
    for row in range(len(batch)):
        prompt, response = unpadded(batch, row)
        expected = manual_logprobs(model, prompt, response, temperature)
        assert torch.allclose(logprobs[row, : len(response)], expected, atol=1e-5), row


def test_compute_logprobs_ignores_extra_padding(tokenizer_and_model, batch):
    tokenizer, model = tokenizer_and_model
    actor = make_actor(model, PolicyLossConfig(micro_batch_size=64))
    reference = actor.compute_logprobs(batch)
    pad = tokenizer.pad_token_id
    size = len(batch)
    wider = Batch(
        tensors={
            "prompt_ids": torch.cat([torch.full((size, 3), pad), batch["prompt_ids"]], dim=1),
            "prompt_mask": torch.cat([torch.zeros(size, 3, dtype=torch.long), batch["prompt_mask"]], dim=1),
            "response_ids": torch.cat([batch["response_ids"], torch.full((size, 4), pad)], dim=1),
            "response_mask": torch.cat([batch["response_mask"], torch.zeros(size, 4, dtype=torch.long)], dim=1),
        }
    )
    padded = actor.compute_logprobs(wider)
    mask = batch["response_mask"].bool()
    assert torch.allclose(padded[:, : reference.shape[1]][mask], reference[mask], atol=1e-5)


def add_rl_fields(batch: Batch, model, seed: int = 0) -> Batch:
    """old_logprobs = current log-probs plus noise (so some ratios are clipped), advantages
    = one random score per sequence on its response tokens, ref_logprobs for the KL term."""
    generator = torch.Generator().manual_seed(seed)
    current = make_actor(model, PolicyLossConfig()).compute_logprobs(batch)
    mask = batch["response_mask"].float()
    shape = current.shape
    batch.set("old_logprobs", current + 0.3 * torch.randn(shape, generator=generator))
    batch.set("ref_logprobs", current + 0.3 * torch.randn(shape, generator=generator))
    batch.set("advantages", torch.randn(len(batch), 1, generator=generator) * mask)
    return batch


@pytest.mark.parametrize("loss_agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"])
@pytest.mark.parametrize("micro_batch_size", [1, 2])
def test_micro_batch_accumulation_matches_full_mini_batch(tokenizer_and_model, batch, loss_agg, micro_batch_size):
    _, model = tokenizer_and_model
    batch = add_rl_fields(batch, model)
    common = dict(ppo_epochs=1, mini_batch_size=6, loss_agg=loss_agg, entropy_coef=0.01, kl_coef=0.1)
    whole_model, micro_model = copy.deepcopy(model), copy.deepcopy(model)
    whole = make_actor(whole_model, PolicyLossConfig(micro_batch_size=6, **common), temperature=0.9)
    micro = make_actor(micro_model, PolicyLossConfig(micro_batch_size=micro_batch_size, **common), temperature=0.9)
    whole_metrics = whole.update_policy(batch)
    micro_metrics = micro.update_policy(batch)
    assert max_weight_difference(whole_model, model) > 1e-4  # the step did move the weights
    assert_same_update(whole, micro)
    # the gradient norm is taken after accumulation, so it must agree as well
    assert micro_metrics["actor/grad_norm"] == pytest.approx(whole_metrics["actor/grad_norm"], rel=1e-4)


def test_two_mini_batches_with_micro_batches(tokenizer_and_model, batch):
    _, model = tokenizer_and_model
    batch = add_rl_fields(batch, model, seed=1)
    common = dict(ppo_epochs=2, mini_batch_size=3)
    whole_model, micro_model = copy.deepcopy(model), copy.deepcopy(model)
    whole = make_actor(whole_model, PolicyLossConfig(micro_batch_size=3, **common), seed=5)
    micro = make_actor(micro_model, PolicyLossConfig(micro_batch_size=1, **common), seed=5)
    whole.update_policy(batch)
    micro.update_policy(batch)
    # four AdamW steps: the first magnifies the rounding of near-zero gradients (micro-batches
    # are trimmed to their own widths, so the sums round differently), and later steps start
    # from those weights; compare the whole update instead (as the data-parallel test does)
    initial, micro_params = dict(model.named_parameters()), dict(micro_model.named_parameters())
    for name, param in whole_model.named_parameters():
        whole_delta, micro_delta = param - initial[name], micro_params[name] - initial[name]
        assert (whole_delta - micro_delta).norm() <= 1e-3 * whole_delta.norm() + 1e-7, name  # measured <= 6e-5
        assert (whole_delta - micro_delta).abs().max() < 1e-4, name


def test_update_raises_logprobs_of_positive_advantage_responses(tokenizer_and_model, batch):
    _, model = tokenizer_and_model
    trained = copy.deepcopy(model)
    actor = make_actor(trained, PolicyLossConfig(mini_batch_size=6, micro_batch_size=6))
    before = actor.compute_logprobs(batch)
    batch.set("old_logprobs", before.clone()).set("advantages", batch["response_mask"].float())
    metrics = actor.update_policy(batch)
    after = actor.compute_logprobs(batch)
    mask = batch["response_mask"].bool()
    assert after[mask].sum() > before[mask].sum()
    # ratio 1 everywhere at the first (only) step: pg_loss = -mean(A) = -1, nothing clipped
    assert metrics["actor/pg_loss"] == pytest.approx(-1.0, abs=1e-5)
    assert metrics["actor/clip_frac_high"] == 0.0 and metrics["actor/clip_frac_low"] == 0.0
    assert metrics["actor/approx_kl"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["actor/lr"] == pytest.approx(1e-3)
    assert {"actor/entropy", "actor/grad_norm"} <= set(metrics)
    assert trained.training


@pytest.mark.parametrize("max_tokens", [1, 24, 40])
def test_a_token_budget_gives_the_same_logprobs_and_update(tokenizer_and_model, batch, max_tokens):
    """`train.max_tokens_per_micro_batch` only regroups rows: logprobs and the accumulated
    mini-batch gradient are those of one full mini-batch."""
    _, model = tokenizer_and_model
    batch = add_rl_fields(batch, model)
    common = dict(ppo_epochs=1, mini_batch_size=6, entropy_coef=0.01, kl_coef=0.1)
    whole_model, budget_model = copy.deepcopy(model), copy.deepcopy(model)
    whole = make_actor(whole_model, PolicyLossConfig(micro_batch_size=6, **common))
    budget = make_actor(budget_model, PolicyLossConfig(micro_batch_size=6, max_tokens=max_tokens, **common))
    mask = batch["response_mask"].bool()
    assert torch.allclose(budget.compute_logprobs(batch)[mask], whole.compute_logprobs(batch)[mask], atol=1e-5)
    whole_metrics, budget_metrics = whole.update_policy(batch), budget.update_policy(batch)
    assert_same_update(whole, budget)
    assert budget_metrics["actor/grad_norm"] == pytest.approx(whole_metrics["actor/grad_norm"], rel=1e-4)
    assert budget_metrics["actor/pg_loss"] == pytest.approx(whole_metrics["actor/pg_loss"], rel=1e-4, abs=1e-6)


def test_off_policy_weights_scale_the_update_and_rejected_rows_teach_nothing(tokenizer_and_model, batch):
    """Rows weighted 0 by an off-policy correction contribute nothing: the update equals the one
    of the other rows alone (with seq-mean-token-sum over all rows, so the divisor is the same),
    and weights of 2 on every token double the gradient."""
    _, model = tokenizer_and_model
    batch = add_rl_fields(batch, model, seed=2)
    mask = batch["response_mask"].float()
    keep = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])[:, None]
    loss = PolicyLossConfig(mini_batch_size=6, micro_batch_size=3, loss_agg="seq-mean-token-sum")
    weighted_model, zeroed_model = copy.deepcopy(model), copy.deepcopy(model)
    weighted = make_actor(weighted_model, loss, grad_clip=0.0)
    weighted_metrics = weighted.update_policy(batch.set("off_policy_weights", keep * mask))
    # the same batch without weights but with the rejected rows' advantages zeroed
    zeroed = make_actor(zeroed_model, loss, grad_clip=0.0)

    def plain() -> Batch:
        return Batch({key: value for key, value in batch.tensors.items() if key != "off_policy_weights"}, dict(batch.non_tensors), dict(batch.meta))

    zeroed_metrics = zeroed.update_policy(plain().set("advantages", batch["advantages"] * keep))
    assert max_weight_difference(weighted_model, model) > 1e-4
    assert_same_update(weighted, zeroed)
    assert weighted_metrics["actor/grad_norm"] == pytest.approx(zeroed_metrics["actor/grad_norm"], rel=1e-5)
    doubled = make_actor(copy.deepcopy(model), loss, grad_clip=0.0).update_policy(batch.set("off_policy_weights", 2 * mask))
    single = make_actor(copy.deepcopy(model), loss, grad_clip=0.0).update_policy(plain())
    assert doubled["actor/grad_norm"] == pytest.approx(2 * single["actor/grad_norm"], rel=1e-5)


def test_an_update_that_is_its_own_old_logprob_pass_weighs_tokens_as_the_controller_would(tokenizer_and_model, batch):
    """One epoch over one mini-batch: the correction's weights come from the update's own
    forward (π_old) and the rollout engine's logprobs; the step equals the one with the
    controller's weights from a separate old-logprob pass, and `off_policy/weight_max` is the
    maximum over micro-batches, not their mean."""
    from rlhf.algorithms.off_policy import OffPolicyBounds, off_policy_weights

    _, model = tokenizer_and_model
    mask = batch["response_mask"].float()
    current = make_actor(model, PolicyLossConfig()).compute_logprobs(batch)
    generator = torch.Generator().manual_seed(3)
    batch.set("rollout_logprobs", (current + 0.4 * torch.randn(current.shape, generator=generator)) * mask)
    batch.set("advantages", torch.randn(len(batch), 1, generator=generator) * mask)
    bounds = OffPolicyBounds(tis_cap=1.5)
    in_update_model, controller_model = copy.deepcopy(model), copy.deepcopy(model)
    in_update = make_actor(in_update_model, PolicyLossConfig(mini_batch_size=6, micro_batch_size=2, off_policy="tis", off_policy_bounds=bounds))
    metrics = in_update.update_policy(batch)
    weights = off_policy_weights("tis", current, batch["rollout_logprobs"], mask, bounds)
    controller = make_actor(controller_model, PolicyLossConfig(mini_batch_size=6, micro_batch_size=2))
    controller.update_policy(Batch(dict(batch.tensors), dict(batch.non_tensors), dict(batch.meta)).set("off_policy_weights", weights))
    assert_same_update(in_update, controller)
    assert metrics["actor/off_policy/weight_max"] == pytest.approx(weights[mask.bool()].max().item(), rel=1e-5)
    assert 0 < metrics["actor/off_policy/weight_mean"] < 1.5
