"""`response_mask_from_ids` and the Hugging Face rollout engine on a tiny offline model."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from rlhf.data.batch import Batch  # noqa: E402
from rlhf.data.prompts import prompt_batch  # noqa: E402
from rlhf.models.load import load_causal_lm, load_tokenizer  # noqa: E402
from rlhf.models.tiny import build_tiny_model  # noqa: E402
from rlhf.rollout.base import SamplingParams, response_mask_from_ids  # noqa: E402
from rlhf.rollout.hf import HFRolloutEngine  # noqa: E402

GREEDY = SamplingParams(greedy=True, max_new_tokens=10)
# With the sharpened weights below, some of these end with EOS before 10 tokens.
PROMPTS = ["0+14=", "84+25=", "49+14=", "98+14=", "7+3=", "12+34="]

# ---- response_mask_from_ids --------------------------------------------------------------


def test_mask_includes_first_eos_and_zeroes_after():
    ids = torch.tensor([[5, 6, 1, 7, 1], [1, 9, 9, 9, 9], [4, 4, 4, 4, 1]])
    assert response_mask_from_ids(ids, [1]).tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_mask_without_eos_is_all_ones():
    assert response_mask_from_ids(torch.tensor([[5, 6, 7], [8, 9, 10]]), [1]).tolist() == [[1, 1, 1], [1, 1, 1]]


def test_mask_with_several_eos_ids():
    ids = torch.tensor([[5, 2, 1, 7], [5, 6, 1, 2], [5, 6, 7, 8]])
    assert response_mask_from_ids(ids, [1, 2]).tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    assert response_mask_from_ids(ids, (2,)).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]


def test_mask_dtype_and_empty_response():
    assert response_mask_from_ids(torch.tensor([[3, 1]]), [1]).dtype == torch.long
    assert response_mask_from_ids(torch.zeros(2, 0, dtype=torch.long), [1]).shape == (2, 0)


# ---- HFRolloutEngine ---------------------------------------------------------------------


def sharpen(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Re-draw the weight matrices with a larger scale. At the tiny model's default init
    (std 0.02) greedy decoding repeats one character forever and never emits EOS, so a
    greedy test could not tell a right answer from a wrong one."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.copy_(torch.randn(param.shape, generator=generator) * 1.5 / param.shape[-1] ** 0.5)
    return model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0))


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return load_tokenizer(model_dir)


@pytest.fixture(scope="module")
def model(model_dir):
    return sharpen(load_causal_lm(model_dir, torch.device("cpu")))


@pytest.fixture(scope="module")
def engine(model, tokenizer):
    return HFRolloutEngine(model, tokenizer)


def prompts_of(texts, tokenizer) -> Batch:
    return prompt_batch([{"prompt": text, "ground_truth": "0"} for text in texts], tokenizer)


def assert_consistent(out: Batch, tokenizer, eos_ids):
    """response_mask is 1 up to and including the first EOS; padding after it."""
    ids, mask = out["response_ids"], out["response_mask"]
    assert ids.shape == mask.shape
    assert torch.equal(mask, response_mask_from_ids(ids, eos_ids))
    assert (ids[mask == 0] == tokenizer.pad_token_id).all()
    is_eos = torch.isin(ids, torch.tensor(eos_ids)) & (mask == 1)
    assert (is_eos.sum(dim=1) <= 1).all()
    lengths = mask.sum(dim=1)
    for row, length in enumerate(lengths.tolist()):
        assert mask[row, :length].all() and not mask[row, length:].any()  # a prefix of ones


def test_eos_ids_come_from_tokenizer_and_config(engine, tokenizer):
    assert engine.eos_token_ids == [tokenizer.eos_token_id]


def test_greedy_output_shapes_and_mask(engine, tokenizer):
    prompts = prompts_of(PROMPTS, tokenizer)
    out = engine.generate(prompts, GREEDY)
    batch_size = len(PROMPTS)
    assert out["response_ids"].shape[0] == batch_size and 1 <= out["response_ids"].shape[1] <= GREEDY.max_new_tokens
    assert out["response_ids"].dtype == torch.long and out["response_mask"].dtype == torch.long
    assert len(out["response_text"]) == batch_size
    assert torch.equal(out["prompt_ids"], prompts["prompt_ids"])  # prompt fields are carried along
    assert out["prompt"] == PROMPTS
    assert_consistent(out, tokenizer, engine.eos_token_ids)
    lengths = out["response_mask"].sum(dim=1)
    assert (lengths < out["response_ids"].shape[1]).any(), "no row stopped at EOS: the test lost its power"
    for row in range(batch_size):
        kept = out["response_ids"][row, : lengths[row]]
        assert out["response_text"][row] == tokenizer.decode(kept, skip_special_tokens=True)


def test_greedy_is_deterministic(engine, tokenizer):
    prompts = prompts_of(PROMPTS, tokenizer)
    first = engine.generate(prompts, GREEDY)
    second = engine.generate(prompts, GREEDY)
    assert torch.equal(first["response_ids"], second["response_ids"])


def test_greedy_independent_of_batch_and_left_padding(engine, tokenizer):
    longer = ["123+456+789=", "99999+1=", "3+4+5+6+7="]
    for text in PROMPTS[:3]:
        alone = engine.generate(prompts_of([text], tokenizer), GREEDY)
        mixed_batch = prompts_of([longer[0], text, *longer[1:]], tokenizer)
        assert mixed_batch["prompt_mask"][1, 0] == 0  # really left-padded in the batch
        mixed = engine.generate(mixed_batch, GREEDY)
        length = int(alone["response_mask"].sum())
        assert int(mixed["response_mask"][1].sum()) == length, text
        assert torch.equal(mixed["response_ids"][1, :length], alone["response_ids"][0, :length]), text
        assert mixed["response_text"][1] == alone["response_text"][0]


def test_micro_batches_give_the_same_greedy_output(model, tokenizer):
    prompts = prompts_of(PROMPTS, tokenizer)
    whole = HFRolloutEngine(model, tokenizer).generate(prompts, GREEDY)
    chunked = HFRolloutEngine(model, tokenizer, micro_batch_size=2).generate(prompts, GREEDY)
    assert torch.equal(chunked["response_ids"], whole["response_ids"])
    assert torch.equal(chunked["response_mask"], whole["response_mask"])
    assert chunked["response_text"] == whole["response_text"]


def test_sampling_is_consistent_and_seeded(engine, tokenizer):
    prompts = prompts_of(PROMPTS * 2, tokenizer)
    sampling = SamplingParams(temperature=1.0, max_new_tokens=8)
    torch.manual_seed(0)
    first = engine.generate(prompts, sampling)
    torch.manual_seed(0)
    second = engine.generate(prompts, sampling)
    assert_consistent(first, tokenizer, engine.eos_token_ids)
    assert first["response_ids"].shape[1] <= 8
    assert torch.equal(first["response_ids"], second["response_ids"])


def test_generate_restores_training_mode(model, engine, tokenizer):
    model.train()
    engine.generate(prompts_of(PROMPTS[:1], tokenizer), SamplingParams(greedy=True, max_new_tokens=2))
    assert model.training
    model.eval()


def test_update_weights_shared_module_copies_nothing(model, engine):
    assert engine.update_weights(model.named_parameters()) == 0


def test_update_weights_copies_into_a_separate_model(model, engine, model_dir, tokenizer):
    other_model = load_causal_lm(model_dir, torch.device("cpu"))  # default init, not sharpened
    other = HFRolloutEngine(other_model, tokenizer)
    prompts = prompts_of(PROMPTS, tokenizer)
    assert not torch.equal(other.generate(prompts, GREEDY)["response_ids"], engine.generate(prompts, GREEDY)["response_ids"])
    expected_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    assert other.update_weights((name, p.detach()) for name, p in model.named_parameters()) == expected_bytes
    for name, param in other_model.named_parameters():
        assert torch.equal(param, dict(model.named_parameters())[name]), name
        assert param.data_ptr() != dict(model.named_parameters())[name].data_ptr()
    assert torch.equal(other.generate(prompts, GREEDY)["response_ids"], engine.generate(prompts, GREEDY)["response_ids"])
