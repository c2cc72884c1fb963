"""Tiny offline Llama and char tokenizer: save/load with Auto classes, determinism, generation."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from rlhf.models.tiny import build_tiny_model, count_parameters  # noqa: E402
from rlhf.models.tokenizer import CHARACTERS, CHAT_MARKERS, build_char_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny model built once at the defaults, shared by the tests of this module."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def test_reload_with_auto_classes(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    assert (tiny_dir / "model.safetensors").is_file()
    assert model.dtype == torch.float32
    assert model.config.vocab_size == len(tokenizer)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied
    assert 300_000 <= count_parameters(model) <= 400_000
    generation_config = model.generation_config
    assert generation_config.pad_token_id == tokenizer.pad_token_id == 0
    assert generation_config.eos_token_id == tokenizer.eos_token_id


def test_same_seed_same_weights_other_seed_differs(tiny_dir, tmp_path):
    reference = AutoModelForCausalLM.from_pretrained(tiny_dir).state_dict()
    same = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "a", seed=0))
    other = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "b", seed=1))
    for name, tensor in same.state_dict().items():
        assert torch.equal(tensor, reference[name]), name
    weight = "model.embed_tokens.weight"
    assert not torch.equal(other.state_dict()[weight], reference[weight])


def test_forward_shape(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    input_ids = torch.randint(0, model.config.vocab_size, (3, 7))
    logits = model(input_ids=input_ids).logits
    assert logits.shape == (3, 7, model.config.vocab_size)


def test_generate_left_padded_without_warnings(tiny_dir, caplog):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    batch = tokenizer(["1+2=", "10+20="], padding=True, return_tensors="pt")
    assert batch["input_ids"][0, 0].item() == tokenizer.pad_token_id  # left padding
    assert batch["attention_mask"][0].tolist() == [0, 0, 1, 1, 1, 1]
    with caplog.at_level("WARNING"):
        greedy = model.generate(**batch, max_new_tokens=4, do_sample=False)
        sampled = model.generate(**batch, max_new_tokens=4, do_sample=True)
    assert greedy.shape[0] == sampled.shape[0] == 2
    assert greedy.shape[1] <= 6 + 4
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warnings == []  # e.g. no "Setting pad_token_id to eos_token_id"


def test_tokenizer_ids_and_no_bos():
    tokenizer = build_char_tokenizer()
    assert len(tokenizer) == 104
    assert tokenizer.pad_token_id == 0
    assert (tokenizer.eos_token_id, tokenizer.bos_token_id) == (1, 2)
    ids = tokenizer("07+45=")["input_ids"]
    assert len(ids) == 6
    assert ids == [tokenizer.convert_tokens_to_ids(c) for c in "07+45="]


@pytest.mark.parametrize(
    "text", ["07+45=52", "Hello,  world!\n  indented\n\n", " lead and trail ", "".join(CHARACTERS)]
)
def test_tokenizer_round_trip(text):
    tokenizer = build_char_tokenizer()
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == len(text)  # one token per character
    assert tokenizer.decode(ids) == text


def test_special_tokens_match_whole():
    tokenizer = build_char_tokenizer()
    ids = tokenizer("<|user|>1+1=<|end|></s>")["input_ids"]
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|user|>")
    assert ids[-2:] == [tokenizer.convert_tokens_to_ids("<|end|>"), tokenizer.eos_token_id]
    assert len(ids) == 1 + 4 + 2
    assert tokenizer.decode(ids, skip_special_tokens=True) == "1+1="


def test_chat_template_with_generation_prompt():
    tokenizer = build_char_tokenizer()
    messages = [{"role": "user", "content": "07+45="}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|user|>07+45=<|end|><|assistant|>"
    with_system = [{"role": "system", "content": "Add."}, *messages]
    text = tokenizer.apply_chat_template(with_system, tokenize=False, add_generation_prompt=False)
    assert text == "<|system|>Add.<|end|><|user|>07+45=<|end|>"


def test_tokenizer_save_load_round_trip(tmp_path):
    tokenizer = build_char_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "<|system|>s<|end|><|user|>07+45=\n <|end|><|assistant|>52</s>"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded.padding_side == "left"
    assert loaded.chat_template == tokenizer.chat_template
    assert loaded.all_special_tokens == tokenizer.all_special_tokens
    for marker in CHAT_MARKERS:
        assert marker in loaded.all_special_tokens
    assert (loaded.pad_token, loaded.eos_token, loaded.bos_token, loaded.unk_token) == (
        "<pad>",
        "</s>",
        "<s>",
        "<unk>",
    )
