"""LoRA on the Ray backend: two ZeRO-3 ranks train the adapter on top of an SFT
warm start, the rollout copies receive merged weights bucket by bucket and pass the probe
check, and the adapter-only checkpoint exports to a plain merged model."""

import pytest
import torch
from conftest import TINY_RL, write_recipe
from transformers import AutoModelForCausalLM

from rlhf.cli.main import main
from rlhf.logging.jsonl import read_jsonl

pytestmark = pytest.mark.slow


def test_ray_zero3_lora_run_syncs_merged_weights_and_exports(tmp_path, ray_cluster):
    peft = pytest.importorskip("peft")
    recipe = write_recipe(tmp_path, TINY_RL.format(zero_stage=3, backend="ray", workers=2, steps=2))
    run_dir, out = tmp_path / "run", tmp_path / "exported"
    overrides = ["model.lora.rank=4", "algorithm.kl.coef=0.01", "sft.max_steps=5", "actor.lr=1e-2", "sync.bucket_mb=1"]
    assert main(["train", str(recipe), f"trainer.output_dir={run_dir}", *overrides]) == 0
    records = read_jsonl(run_dir / "metrics.jsonl")[1:]
    for record in records:
        assert record["actor/grad_norm"] > 0 and record["sync/bytes"] > 0
        assert record["sync/probe_logprob_diff_max"] < 1e-3 and record["rollout/logprob_diff_max"] < 1e-3
    assert records[-1]["kl/sequence_mean"] > 0  # the policy left the adapter-off reference
    assert main(["export", str(run_dir), str(out)]) == 0
    exported = AutoModelForCausalLM.from_pretrained(out)
    # the adapter applies to the SFT base the run saved, and the export is exactly that merge
    merged = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(run_dir / "sft_model"), out / "adapter").merge_and_unload()
    ids = torch.randint(3, 20, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(exported(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-5, rtol=0)
        base_logits = AutoModelForCausalLM.from_pretrained(run_dir / "sft_model")(input_ids=ids).logits
    assert not torch.allclose(exported(input_ids=ids).logits, base_logits)
