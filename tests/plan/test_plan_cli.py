"""`rlhf plan`: verdicts on shipped recipes, JSON output, layouts and config errors."""

import json

import pytest

from rlhf.cli.main import main, resolve_recipe
from rlhf.config.loader import load_recipe
from rlhf.plan.layout import layout_of, plan_recipe
from rlhf.plan.report import summarize


def test_quickstart_fits(capsys):
    assert main(["plan", "quickstart"]) == 0
    out = capsys.readouterr().out
    assert "fits" in out and "NOT" not in out


def test_gsm8k_on_16gb_does_not_fit_and_names_biggest(capsys):
    assert main(["plan", "gsm8k_grpo_orm", "--devices", "1", "--device-memory-gb", "16"]) == 1  # does not fit: exit 1
    out = capsys.readouterr().out
    assert "does NOT fit" in out
    assert "biggest items: actor activations" in out
    assert "gradient_checkpointing" in out


def test_json_output(capsys):
    assert main(["plan", "gsm8k_grpo_orm", "--json", "--device-memory-gb", "200"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["fits"] is True
    assert {"actor", "reference"} <= set(summary["parameters"])
    assert any(item["name"] == "rollout KV cache" for item in summary["items"])


def test_overrides_apply(capsys):
    assert main(["plan", "gsm8k_grpo_orm", "algorithm.kl.coef=0", "--json"]) == 0
    assert "reference" not in json.loads(capsys.readouterr().out)["parameters"]


def test_ppo_recipe_counts_critic_and_prm(capsys):
    assert main(["plan", "math_ppo_prm_clip_delta", "--json"]) == 0
    parameters = json.loads(capsys.readouterr().out)["parameters"]
    assert "critic" in parameters and "RM Qwen2.5-Math-PRM-7B" in parameters


def test_unknown_model_exits_2_naming_key(capsys):
    assert main(["plan", "gsm8k_grpo_orm", "model.path=nobody/no-such-model"]) == 2
    assert "model.path" in capsys.readouterr().err


def test_bad_devices_exits_2(capsys):
    assert main(["plan", "quickstart", "--devices", "0"]) == 2


def test_zero3_over_8_devices_shards_train_state():
    config = load_recipe(resolve_recipe("gsm8k_grpo_orm"), [])
    single = summarize(plan_recipe(config, layout_of(config, 1, 80)))
    config.train.engine, config.train.zero_stage, config.train.gradient_checkpointing = "deepspeed", 3, True
    sharded = summarize(plan_recipe(config, layout_of(config, 8, 80)))
    gib = {item["name"]: item["device_gib"] for item in sharded["items"]}
    base = {item["name"]: item["device_gib"] for item in single["items"]}
    assert gib["actor optimizer state"] * 8 == base["actor optimizer state"]
    assert gib["actor weights"] * 8 == base["actor weights"]
    assert gib["actor activations"] < base["actor activations"] / 10
    assert sharded["peak_gib"] < single["peak_gib"]


def test_lora_counts_only_adapter_gradients_and_optimizer_state_and_no_reference_copy(capsys):
    assert main(["plan", "gsm8k_grpo_orm", "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert main(["plan", "gsm8k_grpo_orm", "model.lora.rank=16", "--json"]) == 0
    lora = json.loads(capsys.readouterr().out)
    # Qwen2.5-1.5B: 28 layers x 16 x (q 1536+1536, k,v 1536+256, o 1536+1536, gate,up 1536+8960, down 8960+1536)
    assert lora["parameters"]["actor LoRA adapters"] == 28 * 16 * (2 * 3072 + 2 * 1792 + 3 * 10496)
    items = {item["name"]: item["device_gib"] for item in lora["items"]}
    full_items = {item["name"]: item["device_gib"] for item in full["items"]}
    assert items["actor optimizer state"] < 0.02 * full_items["actor optimizer state"]
    assert "reference weights" not in items and "reference weights" in full_items  # the base with adapters off
    assert lora["peak_gib"] < full["peak_gib"]


def test_vllm_takes_its_gpu_memory_utilization_share_while_generating_or_all_run(capsys):
    """vLLM reserves `gpu_memory_utilization` × device memory up front for its weights and KV
    cache; with sleep mode it gives it back while the trainer trains, without it never."""
    vllm = ["plan", "gsm8k_grpo_orm", "rollout.engine=vllm", "rollout.vllm.gpu_memory_utilization=0.4", "--json", "--device-memory-gb", "200"]
    assert main(vllm) == 0
    summary = json.loads(capsys.readouterr().out)
    reservation = next(item for item in summary["items"] if item["name"] == "rollout engine reservation")
    assert reservation["device_gib"] == 0.4 * 200 and reservation["phase"] == "rollout"
    assert not any(item["name"] == "rollout KV cache" for item in summary["items"])  # inside the reservation
    assert main([*vllm, "rollout.vllm.enable_sleep_mode=false"]) == 0
    held = json.loads(capsys.readouterr().out)
    assert held["resident_gib"] >= summary["resident_gib"] + 0.4 * 200 - 1e-6
    # on 80 GiB, 32 held all run no longer leave room for the update
    assert main([*vllm[:-2], "rollout.vllm.enable_sleep_mode=false"]) == 1


def test_a_vllm_share_too_small_for_its_weights_is_a_blocker_and_exit_1(capsys):
    assert main(["plan", "gsm8k_grpo_orm", "rollout.engine=vllm", "rollout.vllm.gpu_memory_utilization=0.005"]) == 1
    out = capsys.readouterr().out
    assert "cannot start: rollout.vllm.gpu_memory_utilization=0.005 gives the rollout engine 0.40 GiB" in out
    assert "does NOT fit" in out


def test_bf16_weights_halve_the_actor_and_reference_weights_and_add_masters(capsys):
    assert main(["plan", "gsm8k_grpo_orm", "model.dtype=bfloat16", "--json"]) == 0
    fp32 = {item["name"]: item for item in json.loads(capsys.readouterr().out)["items"]}
    assert main(["plan", "gsm8k_grpo_orm", "model.dtype=bfloat16", "model.param_dtype=bfloat16", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    bf16 = {item["name"]: item for item in plan["items"]}
    for name in ("actor weights", "reference weights"):
        assert bf16[name]["device_gib"] == pytest.approx(fp32[name]["device_gib"] / 2)
    assert bf16["actor gradients"]["device_gib"] == pytest.approx(fp32["actor gradients"]["device_gib"])  # fp32, of the masters
    assert bf16["actor optimizer state"]["device_gib"] == pytest.approx(fp32["actor optimizer state"]["device_gib"] * 12 / 8)
    assert "fp32 master weights" in bf16["actor optimizer state"]["note"]
    assert any("bf16 weights, fp32 gradients of its fp32 master weights" in note for note in plan["assumptions"])
