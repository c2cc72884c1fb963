"""LoRA through PEFT, piece by piece on the tiny model: wrapping and its errors,
merged weights for the rollout engine, what the optimiser and a checkpoint hold, the
reference with the adapter switched off. The end-to-end runs are in
tests/controller/test_lora_run.py."""

import copy
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from rlhf.config.errors import ConfigError
from rlhf.config.loader import load_recipe
from rlhf.config.schema import LoRAConfig
from rlhf.controller.sft import sft_batch
from rlhf.data.prompts import prompt_batch
from rlhf.engines.base import OptimConfig
from rlhf.engines.buckets import buckets
from rlhf.engines.torch_engine import TorchEngine
from rlhf.models.load import load_tokenizer
from rlhf.models.lora import (
    apply_lora,
    base_module,
    is_lora_model,
    merged_named_weights,
    trainable_share,
)
from rlhf.models.tiny import build_tiny_model
from rlhf.workers.ref import AdapterDisabledRef, RefWorker

LORA = LoRAConfig(rank=4, alpha=8.0)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def load(tiny_dir: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)


def trained_adapter(tiny_dir: Path, lora: LoRAConfig = LORA) -> torch.nn.Module:
    """A LoRA model whose B matrices are non-zero (PEFT starts them at zero: a no-op adapter)."""
    model = apply_lora(load(tiny_dir), lora)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return model


def test_only_the_adapters_train_and_the_optimiser_holds_only_them(tiny_dir: Path):
    model = apply_lora(load(tiny_dir), LORA)
    assert is_lora_model(model) and not is_lora_model(base_module(model))
    trainable, total = trainable_share(model)
    # 2 layers x 7 projections x r (in + out): 4 * (4 * 256 + 3 * 384) * 2 = 17,408 of ~0.36M
    assert trainable == 17_408 and trainable / total < 0.05
    engine = TorchEngine(model, OptimConfig(lr=1e-2))
    adapter_ids = {id(param) for name, param in model.named_parameters() if ".lora_" in name}
    assert {id(param) for group in engine.optimizer.param_groups for param in group["params"]} == adapter_ids


def test_merged_weights_equal_merge_and_unload_under_base_names(tiny_dir: Path):
    model = trained_adapter(tiny_dir)
    live = {name: param.detach().clone() for name, param in model.named_parameters()}
    merged = dict(merged_named_weights(model, ((name, param.detach()) for name, param in model.named_parameters())))
    reference = copy.deepcopy(model).merge_and_unload()
    expected = dict(reference.named_parameters())
    assert list(merged) == list(expected) == [name for name, _ in load(tiny_dir).named_parameters()]
    for name, tensor in expected.items():
        torch.testing.assert_close(merged[name], tensor.detach(), atol=1e-6, rtol=0, msg=name)
    base = dict(load(tiny_dir).named_parameters())
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(merged["model.layers.0.input_layernorm.weight"], base["model.layers.0.input_layernorm.weight"])
    # the trainer's module is left as it was: nothing merged in place
    assert all(torch.equal(param, live[name]) for name, param in model.named_parameters())


def test_merging_works_on_a_stream_cut_into_small_buckets(tiny_dir: Path):
    """ZeRO-3 gathers the weights in buckets: a layer's W, A and B may arrive apart."""
    model = trained_adapter(tiny_dir)
    whole = dict(merged_named_weights(model, model.named_parameters()))
    stream = (pair for bucket in buckets(((n, p.detach()) for n, p in model.named_parameters()), 2048) for pair in bucket)
    cut = dict(merged_named_weights(model, stream))
    assert cut.keys() == whole.keys() and all(torch.equal(cut[name], whole[name]) for name in whole)


def test_the_rollout_sharing_the_module_generates_with_the_adapter(tiny_dir: Path):
    """PEFT injects its layers into the wrapped model in place: the colocated HF rollout engine,
    which holds that model, samples from the adapted policy without any weight copy."""
    base = load(tiny_dir)
    model = trained_adapter(tiny_dir)
    inner = base_module(model)
    ids = torch.randint(3, 20, (2, 6), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(inner(input_ids=ids).logits, model(input_ids=ids).logits)
    assert not torch.allclose(inner(input_ids=ids).logits, base(input_ids=ids).logits)


def test_the_adapter_off_reference_scores_like_a_copy_of_the_base(tiny_dir: Path):
    tokenizer = load_tokenizer(str(tiny_dir))
    batch = sft_batch(prompt_batch([{"prompt": "1+2=", "ground_truth": "3"}, {"prompt": "10+25=", "ground_truth": "35"}], tokenizer), tokenizer)
    model = trained_adapter(tiny_dir).train()
    shared = AdapterDisabledRef(model, temperature=0.7, micro_batch_size=1).compute_logprobs(batch)
    copied = RefWorker(load(tiny_dir), temperature=0.7, micro_batch_size=1).compute_logprobs(batch)
    torch.testing.assert_close(shared, copied, atol=1e-6, rtol=0)
    assert model.training and all(p.requires_grad for n, p in model.named_parameters() if ".lora_" in n)
    assert AdapterDisabledRef(model, temperature=0.7, micro_batch_size=1).state_dict() == {}


def test_a_checkpoint_holds_only_the_adapter(tiny_dir: Path, tmp_path: Path):
    engine = TorchEngine(trained_adapter(tiny_dir), OptimConfig(lr=1e-2))
    (tmp_path / "lora").mkdir()
    engine.save_checkpoint(tmp_path / "lora")
    state = torch.load(tmp_path / "lora" / "engine.pt", weights_only=True)["module"]
    assert state and all(".lora_" in name for name in state)
    restored = TorchEngine(apply_lora(load(tiny_dir), LORA), OptimConfig(lr=1e-2))
    restored.load_checkpoint(tmp_path / "lora")
    assert all(torch.equal(a, b) for a, b in zip(restored.module.state_dict().values(), engine.module.state_dict().values()))


def test_target_modules_that_match_no_linear_layer_name_the_key(tiny_dir: Path):
    with pytest.raises(ConfigError, match=r"model\.lora\.target_modules: \['qkv'\] match no linear layer") as error:
        apply_lora(load(tiny_dir), LoRAConfig(rank=4, target_modules=["q_proj", "qkv"]))
    assert "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj" in str(error.value)
    everything = apply_lora(load(tiny_dir), LoRAConfig(rank=2, target_modules=["all-linear"]))
    assert trainable_share(everything)[0] == 8_704  # every projection, not the LM head


@pytest.mark.parametrize("override, message", [
    ("model.lora.rank=-1", "model.lora.rank: must be >= 0"),
    ("model.lora.alpha=0", "model.lora.alpha: must be > 0"),
    ("model.lora.dropout=1.0", r"model.lora.dropout: must be in \[0, 1\)"),
    ("model.lora.target_modules=[]", "model.lora.target_modules: must be a non-empty list"),
])
def test_lora_keys_are_validated(override: str, message: str):
    with pytest.raises(ConfigError, match=message):
        load_recipe(None, ["model.path=org/some-model", override])
