"""`model.param_dtype: bfloat16` in the DeepSpeed engine: DeepSpeed's bf16 mode (bfloat16
module, float32 master partitions and AdamW state in the ZeRO optimiser), on CPU (gloo),
checked against float32 training with the tolerances of `test_param_dtype.py` (which explains
them). ZeRO accumulates the micro-batches' bfloat16 gradients in bfloat16, where the torch
engine adds them in float32; over two micro-batches that stays within the same tolerances."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import pytest
import torch

deepspeed = pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install 'rlhf[deepspeed]')")

from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state
from transformers import AutoModelForCausalLM

from rlhf.engines.deepspeed_engine import DeepSpeedEngine
from rlhf.engines.torch_engine import TorchEngine
from tests.engines.test_param_dtype import BF16, OPTIM, STEPS, TOKENS, load, train


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from rlhf.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def bf16_engine(module: torch.nn.Module, zero_stage: int) -> DeepSpeedEngine:
    return DeepSpeedEngine(module, OPTIM, zero_stage=zero_stage, autocast_dtype=BF16, param_dtype=BF16)


def full_state(engine: DeepSpeedEngine, moments: bool = True) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """name -> (the module's full bfloat16 parameter, its float32 master, its AdamW exp_avg
    (with `moments`: there is none before the first step)), gathered under ZeRO-3 (every rank
    must call)."""
    state = {}
    for name, param in engine.module.named_parameters():
        gather = deepspeed.zero.GatheredParameters([param]) if engine.zero_stage == 3 else _nothing()
        with gather:
            module_value = param.detach().clone()
        exp_avg = safe_get_full_optimizer_state(param, "exp_avg") if moments else None
        state[name] = (module_value, safe_get_full_fp32_param(param), exp_avg)
    return state


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("zero_stage", [1, 2, 3])
def test_bf16_mode_matches_float32_within_bf16_tolerance(tiny_dir: Path, zero_stage: int):
    initial = {name: param.detach().clone() for name, param in load(tiny_dir).named_parameters()}
    reference = TorchEngine(load(tiny_dir), OPTIM)
    engine = bf16_engine(load(tiny_dir), zero_stage)
    # the masters start from the exact float32 weights (DeepSpeed builds them from its rounded module)
    assert all(torch.equal(master, initial[name]) for name, (_, master, _) in full_state(engine, moments=False).items())
    expected_losses, expected_norms = train(reference, STEPS)
    losses, norms = train(engine, STEPS)
    assert losses == pytest.approx(expected_losses, rel=1e-2)
    assert norms == pytest.approx(expected_norms, rel=2e-2)
    weights = dict(reference.module.named_parameters())
    state = full_state(engine)
    update = math.sqrt(sum(float(((weights[name].detach() - initial[name]) ** 2).sum()) for name in weights))
    error = math.sqrt(sum(float(((master - weights[name].detach()) ** 2).sum()) for name, (_, master, _) in state.items()))
    assert 0 < error <= 0.1 * update
    for name, (module_value, master, exp_avg) in state.items():
        assert module_value.dtype == BF16 and master.dtype == exp_avg.dtype == torch.float32, name
        assert torch.equal(module_value, master.to(BF16)), name  # the module is its masters rounded
    named = dict(engine.named_weights())
    assert {tensor.dtype for tensor in named.values()} == {BF16}
    assert all(torch.equal(named[name], state[name][0]) for name in named)


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_checkpoint_round_trip_and_hf_export_in_bf16(tiny_dir: Path, tmp_path: Path, zero_stage: int):
    engine = bf16_engine(load(tiny_dir), zero_stage)
    train(engine, 1)
    engine.save_checkpoint(tmp_path / "ckpt")
    engine.export_hf(tmp_path / "hf")
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype="auto")
    saved = dict(exported.named_parameters())
    assert all(saved[name].dtype == BF16 and torch.equal(saved[name], tensor) for name, tensor in engine.named_weights())

    restored = bf16_engine(load(tiny_dir), zero_stage)
    restored.load_checkpoint(tmp_path / "ckpt")
    assert restored.lr == engine.lr
    # the next step depends on the masters, AdamW's moments and the schedule: identical only if all loaded
    assert train(restored, 1) == train(engine, 1)
    for name, (module_value, master, exp_avg) in full_state(restored).items():
        expected = full_state(engine)[name]
        assert torch.equal(module_value, expected[0]) and torch.equal(master, expected[1]) and torch.equal(exp_avg, expected[2]), name


def _data_parallel_rank(rank: int, port: int, tiny_dir: str, out_dir: str) -> None:
    """One of two ranks: bf16 ZeRO-3 over its half of the batch; rank 0 saves the masters at
    the start and the end."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    engine = bf16_engine(load(Path(tiny_dir)), 3)
    start = {name: master for name, (_, master, _) in full_state(engine, moments=False).items()}
    train(engine, 2, TOKENS[rank * 2:(rank + 1) * 2])
    end = full_state(engine)
    if rank == 0:
        torch.save({"start": start, "end": end}, Path(out_dir) / "state.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow  # two gloo ranks: 8 s
def test_two_ranks_zero3_bf16_match_float32_on_the_whole_batch(tiny_dir: Path, tmp_path: Path):
    """Each rank holds half of every master; both halves start from the float32 weights, and
    the data-parallel run trains like float32 on the whole batch within the bf16 tolerance."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torch.multiprocessing.spawn(_data_parallel_rank, args=(port, str(tiny_dir), str(tmp_path)), nprocs=2, join=True)
    state = torch.load(tmp_path / "state.pt")
    initial = {name: param.detach() for name, param in load(tiny_dir).named_parameters()}
    assert all(torch.equal(state["start"][name], initial[name]) for name in initial)
    reference = TorchEngine(load(tiny_dir), OPTIM)
    for _ in range(2):  # rank 0's rows 0-1 and rank 1's rows 2-3, halved again: micro-batches (0, 2), (1, 3)
        for micro in (TOKENS[[0, 2]], TOKENS[[1, 3]]):
            reference.backward(0.5 * reference.module(input_ids=micro, labels=micro).loss)
        reference.step()
    weights = {name: param.detach() for name, param in reference.module.named_parameters()}
    update = math.sqrt(sum(float(((weights[name] - initial[name]) ** 2).sum()) for name in weights))
    error = math.sqrt(sum(float(((master - weights[name]) ** 2).sum()) for name, (_, master, _) in state["end"].items()))
    assert 0 < error <= 0.1 * update
    assert all(torch.equal(value, master.to(BF16)) for value, master, _ in state["end"].values())
