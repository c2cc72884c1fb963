"""Helpers shared by tests in several folders (importable as `tiny_helpers`: pytest puts the
folder of tests/conftest.py on sys.path)."""

import json
from pathlib import Path

import torch

from rlhf.data.batch import Batch
from rlhf.models.tiny_reward import build_tiny_reward_model
from rlhf.models.tokenizer import build_char_tokenizer


def sharpen_weights(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Larger weights than the default init (std 0.02), so log-probs and hidden states are far
    from uniform and an error in positions or masking shows up clearly. In place; returns it."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.copy_(torch.randn(param.shape, generator=generator) * 1.5 / param.shape[-1] ** 0.5)
    return model


def response_batch(prompts, responses) -> Batch:
    """Prompts and right-padded responses (EOS included) of the char tokenizer, as the rollout
    engine makes them."""
    tokenizer = build_char_tokenizer()
    rows = [tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for r in responses]
    width = max(map(len, rows))
    ids = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in rows])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
    return Batch({"response_ids": ids, "response_mask": mask},
                 {"prompt": list(prompts), "prompt_text": list(prompts), "response_text": list(responses)},
                 {"tokenizer": tokenizer})


def comparable_metrics(records: list[dict]) -> list[dict]:
    """Metric records without what depends on wall-clock time (`time/*`, tokens per second,
    throughput): what a resumed run must reproduce exactly."""
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/tokens_per_s", "perf/throughput"))} for r in records]


def interrupt_rl_step(patcher, step_to_fail: int, *, sigterm: bool = False) -> None:
    """Make RL step `step_to_fail` of the loop crash (RuntimeError before the step) or, with
    `sigterm`, get a SIGTERM during it (the step finishes, checkpoints, then the run stops).
    `patcher`: pytest's monkeypatch (or a MonkeyPatch context); undo it to run normally."""
    import os
    import signal

    import rlhf.controller.loop as loop

    real_step = loop.rl_step

    def interrupted(run, roles, sampler, timer, step, *rest, **kwargs):
        if step == step_to_fail:
            if sigterm:
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                raise RuntimeError("simulated crash")
        return real_step(run, roles, sampler, timer, step, *rest, **kwargs)

    patcher.setattr(loop, "rl_step", interrupted)


def async_run_interrupted_and_resumed(main, args: list[str], out, steps: int, monkeypatch, capsys) -> list[dict]:
    """Run `rlhf train args` of an asynchronous run with a SIGTERM during step 3 (the step
    finishes and checkpoints the stream), then again to the end; returns the metrics records
    after checking that the resume covered every step once within the staleness bound of 1,
    dropping nothing."""
    from rlhf.logging.jsonl import read_jsonl

    interrupt_rl_step(monkeypatch, 3, sigterm=True)
    assert main(args) == 130
    monkeypatch.undo()
    assert main(args) == 0
    assert "resumed from" in capsys.readouterr().out
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(steps + 1))
    for record in records[1:]:
        assert record["async/staleness_max"] <= 1 and record["async/dropped"] == 0.0
    return records


def cache_hub_model(cache, repo_id: str, files=("config.json", "model.safetensors")) -> None:
    """Lay out `repo_id`'s main revision in the Hugging Face cache directory `cache` as
    `hf download` does (the files hold '{}': enough to be found, not to be loaded)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name in files:
        (snapshot / name).write_text("{}")


def tiny_reward_model_dir(path: Path, kind: str, *, seed: int = 3, separator: str = "#", step_split: str | None = None) -> Path:
    """A tiny random ORM (`classifier`) or PRM (`two_class`: `separator` after each step, steps
    split by `step_split`, None: blank lines) at `path`, with the sidecar `rlhf rm` writes."""
    build_tiny_reward_model(path, kind, seed=seed)
    info = ({"type": "orm", "kind": "classifier"} if kind == "classifier"
            else {"type": "prm", "kind": "two_class", "separator": separator, "step_split": step_split})
    (path / "reward_model.json").write_text(json.dumps(info))
    return path
