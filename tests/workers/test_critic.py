"""The critic on a tiny model: the value model's initial predictions, the positions of
`response_values` against plain unpadded forwards, the regression on the returns, micro-batch
accumulation, saving and loading, and explained variance by hand."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy  # noqa: E402
import re  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from rlhf.algorithms.losses import masked_mean  # noqa: E402
from rlhf.data.batch import Batch  # noqa: E402
from rlhf.engines.base import OptimConfig  # noqa: E402
from rlhf.engines.torch_engine import TorchEngine  # noqa: E402
from rlhf.models.load import load_causal_lm  # noqa: E402
from rlhf.models.value_model import HEAD_FILE, ValueModel, load_value_model, value_model_from_policy  # noqa: E402
from rlhf.workers.critic import CriticWorker, ValueLossConfig, explained_variance  # noqa: E402
from rlhf.workers.forward import response_values  # noqa: E402
from update_checks import assert_same_update, max_weight_difference  # noqa: E402

RETURNS = torch.tensor([0.5, -0.5, 0.8, -0.2, 0.3, -0.7])
"""One target per sequence (of conftest.ROWS), spread over every token of its response."""


def random_head(model: ValueModel, seed: int = 0) -> ValueModel:
    """`model` with a random head, so values vary by position and the backbone gets gradients."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.head.weight.copy_(torch.randn(model.head.weight.shape, generator=generator) / model.head.in_features**0.5)
        model.head.bias.copy_(0.1 * torch.randn(model.head.bias.shape, generator=generator))
    return model


def make_critic(model: ValueModel, loss: ValueLossConfig, lr: float = 1e-3, seed: int = 0) -> CriticWorker:
    return CriticWorker(TorchEngine(model, OptimConfig(lr=lr)), loss, seed=seed)


def unpadded(batch: Batch, row: int) -> tuple[list[int], list[int]]:
    prompt = batch["prompt_ids"][row][batch["prompt_mask"][row] == 1].tolist()
    response = batch["response_ids"][row][batch["response_mask"][row] == 1].tolist()
    return prompt, response


def manual_value(model: ValueModel, ids: list[int]) -> torch.Tensor:
    """Head outputs [K] at the last position of one unpadded sequence."""
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        outputs = model(input_ids, torch.ones_like(input_ids), torch.arange(len(ids))[None], keep_last=1)
    return outputs[0, -1]


def with_returns(batch: Batch) -> Batch:
    return batch.set("returns", RETURNS[:, None] * batch["response_mask"].float())


def squared_error(values: torch.Tensor, batch: Batch) -> float:
    return masked_mean((values - batch["returns"]) ** 2, batch["response_mask"].float()).item()


# ---- the value model --------------------------------------------------------------------


def test_fresh_mse_critic_predicts_zero(tokenizer_and_model, batch):
    _, policy = tokenizer_and_model
    critic = make_critic(value_model_from_policy(policy, 1), ValueLossConfig(loss="mse"))
    values = critic.compute_values(batch)
    assert values.shape == batch["response_ids"].shape and values.dtype == torch.float32
    assert (values == 0).all()


def test_fresh_hl_gauss_critic_predicts_the_centre_of_its_support(tokenizer_and_model, batch):
    _, policy = tokenizer_and_model
    # 11 bins over [-1, 3]: uniform probabilities read out as the mean bin centre, 1
    critic = make_critic(value_model_from_policy(policy, 11), ValueLossConfig(loss="hl_gauss", v_min=-1.0, v_max=3.0))
    values = critic.compute_values(batch)
    mask = batch["response_mask"].bool()
    assert torch.allclose(values[mask], torch.ones(int(mask.sum())), atol=1e-6)
    assert (values[~mask] == 0).all()


@pytest.mark.parametrize("micro_batch_size", [1, 4, 64])
def test_compute_values_is_zero_on_padding(tokenizer_and_model, batch, micro_batch_size):
    _, policy = tokenizer_and_model
    model = random_head(value_model_from_policy(policy, 1))
    values = make_critic(model, ValueLossConfig(micro_batch_size=micro_batch_size)).compute_values(batch)
    mask = batch["response_mask"].bool()
    assert (~mask).any() and (values[~mask] == 0).all()
    with torch.no_grad():
        expected = response_values(model, batch).squeeze(-1)
    assert torch.allclose(values[mask], expected[mask], atol=1e-6)
    assert values[mask].abs().min() > 0  # the random head does not predict 0 by accident


def test_response_values_column_t_is_the_state_before_token_t(tokenizer_and_model, batch):
    _, policy = tokenizer_and_model
    model = random_head(value_model_from_policy(policy, 3)).eval()
    with torch.no_grad():
        outputs = response_values(model, batch)
    assert outputs.shape == (*batch["response_ids"].shape, 3) and outputs.dtype == torch.float32
    assert (batch["prompt_mask"] == 0).any() and (batch["response_mask"] == 0).any()  # padding on both sides
    for row in range(len(batch)):
        prompt, response = unpadded(batch, row)
        for t in range(len(response)):
            expected = manual_value(model, prompt + response[:t])
            assert torch.allclose(outputs[row, t], expected, atol=1e-5), (row, t)


def test_value_model_from_policy_copies_the_backbone(tokenizer_and_model, batch):
    _, policy = tokenizer_and_model
    policy_before = {name: p.clone() for name, p in policy.named_parameters()}
    model = random_head(value_model_from_policy(policy, 1))
    backbone = dict(model.backbone.named_parameters())
    for name, param in policy.model.named_parameters():
        assert torch.equal(backbone[name], param) and backbone[name].data_ptr() != param.data_ptr(), name
    critic = make_critic(model, ValueLossConfig(mini_batch_size=6, micro_batch_size=6, value_clip=None), lr=1e-2)
    batch = with_returns(batch).set("values", critic.compute_values(batch))
    critic.update_critic(batch)
    assert not torch.equal(model.backbone.embed_tokens.weight, policy.model.embed_tokens.weight)  # the critic did train
    for name, param in policy.named_parameters():
        assert torch.equal(param, policy_before[name]), name


# ---- training ---------------------------------------------------------------------------


@pytest.mark.parametrize(("loss", "value_clip"), [("mse", None), ("mse", 0.2), ("hl_gauss", None)])
def test_update_moves_values_towards_the_returns(tokenizer_and_model, batch, loss, value_clip):
    _, policy = tokenizer_and_model
    num_outputs = 21 if loss == "hl_gauss" else 1
    config = ValueLossConfig(loss=loss, value_clip=value_clip, mini_batch_size=6, micro_batch_size=6)
    critic = make_critic(value_model_from_policy(policy, num_outputs), config, lr=3e-3)
    batch = with_returns(batch)
    losses, errors = [], []
    for _ in range(4):
        batch.set("values", critic.compute_values(batch))
        errors.append(squared_error(batch["values"], batch))
        metrics = critic.update_critic(batch)
        losses.append(metrics["critic/value_loss"])
        if len(losses) == 1:
            first_metrics = metrics
    errors.append(squared_error(critic.compute_values(batch), batch))
    assert set(metrics) == {f"critic/{key}" for key in ["value_loss", "clip_frac", "value_mean", "grad_norm", "skipped_updates", "lr", "explained_var"]}
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert errors[-1] < 0.75 * errors[0], errors
    # The first update starts from the fresh critic's constant prediction (0 for mse and for
    # HL-Gauss on [-1, 1]): it explains none of the variance, and value_mean is that constant.
    assert first_metrics["critic/explained_var"] == pytest.approx(0.0, abs=1e-6)
    assert first_metrics["critic/value_mean"] == pytest.approx(0.0, abs=1e-6)
    assert first_metrics["critic/clip_frac"] == 0.0
    assert first_metrics["critic/lr"] == pytest.approx(3e-3)
    if loss == "mse":
        # 0.5 * mean of squared returns over the valid tokens
        assert first_metrics["critic/value_loss"] == pytest.approx(0.5 * errors[0], rel=1e-5)
    assert metrics["critic/explained_var"] > 0


def test_value_clip_is_active_when_values_run_past_it(tokenizer_and_model, batch):
    _, policy = tokenizer_and_model
    config = ValueLossConfig(loss="mse", value_clip=0.01, ppo_epochs=4, mini_batch_size=6, micro_batch_size=6)
    critic = make_critic(value_model_from_policy(policy, 1), config, lr=1e-2)
    batch = with_returns(batch)
    metrics = critic.update_critic(batch.set("values", critic.compute_values(batch)))
    # after the first epoch the values have moved more than 0.01 away from 0 on some tokens
    assert metrics["critic/clip_frac"] > 0


@pytest.mark.parametrize(("loss", "num_outputs"), [("mse", 1), ("hl_gauss", 5)])
def test_micro_batch_accumulation_matches_full_mini_batch(tokenizer_and_model, batch, loss, num_outputs):
    _, policy = tokenizer_and_model
    model = random_head(value_model_from_policy(policy, num_outputs))
    whole_model, micro_model = copy.deepcopy(model), copy.deepcopy(model)
    common = dict(loss=loss, value_clip=0.05, mini_batch_size=6)
    whole = make_critic(whole_model, ValueLossConfig(micro_batch_size=6, **common))
    micro = make_critic(micro_model, ValueLossConfig(micro_batch_size=1, **common))
    # old values off the current ones, so that the value clip binds on some tokens
    noise = 0.1 * torch.randn(batch["response_ids"].shape, generator=torch.Generator().manual_seed(1))
    batch = with_returns(batch).set("values", whole.compute_values(batch) + noise * batch["response_mask"])
    whole_metrics = whole.update_critic(batch)
    micro_metrics = micro.update_critic(batch)
    if loss == "mse":
        assert whole_metrics["critic/clip_frac"] > 0
    assert max_weight_difference(whole_model, model) > 1e-4  # the step did move the weights
    assert_same_update(whole, micro)
    assert micro_metrics["critic/grad_norm"] == pytest.approx(whole_metrics["critic/grad_norm"], rel=1e-4)


# ---- saving and loading -----------------------------------------------------------------


def test_save_and_load_round_trip(tokenizer_and_model, batch, tmp_path):
    _, policy = tokenizer_and_model
    model = random_head(value_model_from_policy(policy, 3)).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / HEAD_FILE).exists()
    loaded = load_value_model(str(tmp_path), 3, torch.device("cpu")).eval()
    with torch.no_grad():
        assert torch.allclose(response_values(loaded, batch), response_values(model, batch), atol=1e-6)


def test_loading_a_head_of_the_wrong_size_names_the_file(tokenizer_and_model, tmp_path):
    _, policy = tokenizer_and_model
    random_head(value_model_from_policy(policy, 3)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / HEAD_FILE)) + ".* 3 outputs .* needs 1"):
        load_value_model(str(tmp_path), 1, torch.device("cpu"))


def test_loading_a_causal_lm_gives_its_backbone_and_a_zero_head(tiny_path):
    model = load_value_model(tiny_path, 5, torch.device("cpu"))
    assert model.num_outputs == 5
    assert (model.head.weight == 0).all() and (model.head.bias == 0).all()
    causal_lm = load_causal_lm(tiny_path, torch.device("cpu"))
    backbone = dict(model.backbone.named_parameters())
    for name, param in causal_lm.model.named_parameters():
        assert torch.equal(backbone[name], param), name


# ---- explained variance -----------------------------------------------------------------

MASK = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
RETURNS_BY_HAND = torch.tensor([[1.0, 2.0, 3.0, 4.0], [50.0, -50.0, 7.0, 0.0]])  # row 2 is padding


def test_explained_variance_of_perfect_values_is_one():
    values = RETURNS_BY_HAND.clone()
    values[1] = -9.0  # padding does not count
    assert explained_variance(values, RETURNS_BY_HAND, MASK).item() == pytest.approx(1.0)


def test_explained_variance_of_the_mean_is_zero():
    values = torch.full_like(RETURNS_BY_HAND, 2.5)
    assert explained_variance(values, RETURNS_BY_HAND, MASK).item() == pytest.approx(0.0, abs=1e-7)


def test_explained_variance_by_hand():
    values = torch.tensor([[1.0, 2.0, 3.0, 3.0], [100.0, 100.0, 100.0, 100.0]])
    # residuals 0, 0, 0, 1: mean 0.25, variance (3 * 0.0625 + 0.5625) / 4 = 0.1875
    # returns 1..4: mean 2.5, variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25
    assert explained_variance(values, RETURNS_BY_HAND, MASK).item() == pytest.approx(1 - 0.1875 / 1.25)


def test_explained_variance_is_zero_for_constant_returns():
    returns = torch.full((2, 4), 0.7)
    values = torch.tensor([[0.0, 1.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    result = explained_variance(values, returns, MASK)
    assert result.shape == () and result.item() == 0.0
