"""Bad input, swept: one table of malformed inputs, each run through `rlhf` in
process (a few also through a real `python -m rlhf.cli.main` process).

Every case must end with exit status 2 (a usage or config error) or 1 (a runtime failure), a
one-paragraph message that names the culprit (the key, file, row or function), no traceback
(only `--debug` shows one), and, where the run directory already held an earlier run (`prior`:
a finished one-step run with its checkpoint is copied in first), every file of that run
byte-identical afterwards (config.yaml aside: each launch records its own resolved config).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlhf.cli.main import main
from rlhf.logging.jsonl import read_jsonl

TINY = ["sft.enabled=false", "trainer.total_steps=1", "data.train_batch_size=2", "rollout.n=2", "actor.mini_batch_size=4",
        "actor.micro_batch_size=4", "data.eval.path=", "sync.check_every=0", "trainer.save_every=1"]
"""A one-step quickstart run (4 sequences, no SFT, no evaluation) that checkpoints its step."""
ROWS = [{"prompt": "1+1=", "ground_truth": "2"}, {"prompt": "2+2=", "ground_truth": "4"}]


def train(*overrides: str) -> tuple[str, ...]:
    """`rlhf train quickstart` of the tiny run in `{dir}/run`, then `overrides`."""
    return ("train", "quickstart", "trainer.output_dir={dir}/run", *TINY, *overrides)


def function_source(options: str = "") -> str:
    """An override making `score` of `{dir}/rewards.py` the only reward source."""
    return "reward.sources=[{type: function, path: {dir}/rewards.py, name: score" + options + "}]"


def jsonl(*rows: dict | str) -> str:
    """JSON-lines text; a string row is written verbatim (a corrupt line)."""
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


SetUp = Callable[[Path, Path], None]
"""(the case's directory, the prior run's directory) -> None: writes what the case needs."""


def files(**contents: str | bytes) -> SetUp:
    """Write files into the case directory (`name__ext` stands for `name.ext`; `{dir}` in a
    text is the directory)."""
    def set_up(case_dir: Path, prior: Path) -> None:
        for name, content in contents.items():
            text = content if isinstance(content, bytes) else content.replace("{dir}", str(case_dir)).encode()
            (case_dir / name.replace("__", ".")).write_bytes(text)
    return set_up


def model_copy(change: Callable[[Path], None]) -> SetUp:
    """The prior run's tiny model copied to `{dir}/model`, then changed by `change(model_dir)`."""
    def set_up(case_dir: Path, prior: Path) -> None:
        shutil.copytree(prior / "init_model", case_dir / "model")
        change(case_dir / "model")
    return set_up


def without_pad_or_eos(model_dir: Path, keep_eos: bool = False) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = None
    if not keep_eos:
        tokenizer.eos_token = None
    tokenizer.save_pretrained(model_dir)


def eos_only(model_dir: Path) -> None:
    """Weights that make every token's output EOS: the residual stream is a constant vector
    (attention and MLP outputs zeroed, all embeddings equal), the head reads only EOS."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.config.tie_word_embeddings = False
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight = torch.nn.Parameter(torch.ones_like(model.model.embed_tokens.weight))
        model.lm_head.weight = torch.nn.Parameter(torch.zeros_like(model.lm_head.weight))
        model.lm_head.weight[model.config.eos_token_id] = 1.0
    model.save_pretrained(model_dir)


def both(*steps: SetUp) -> SetUp:
    def set_up(case_dir: Path, prior: Path) -> None:
        for step in steps:
            step(case_dir, prior)
    return set_up


def damage(relative: str, content: bytes) -> SetUp:
    """Overwrite `{dir}/run/<relative>` (of the copied prior run) with `content`."""
    def set_up(case_dir: Path, prior: Path) -> None:
        (case_dir / "run" / relative).write_bytes(content)
    return set_up


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    argv: tuple[str, ...]
    """The command line; `{dir}` is the case's own directory."""
    code: int
    culprit: tuple[str, ...]
    """Regular expressions the message must all match (`{dir}`: the directory, escaped)."""
    set_up: SetUp | None = None
    prior: bool = False
    """Copy the finished one-step run into `{dir}/run` first; its files must stay intact."""
    xfail: str = ""
    """Why the case fails today (a fix outside the files this test's author may edit)."""


RAISES = "def score(prompt, response, ground_truth):\n    raise ValueError('cannot parse ' + repr(response))\n"
SLEEPS = "import time\n\ndef score(prompt, response, ground_truth):\n    time.sleep(3600)\n"
SPINS = "def score(prompts, responses, ground_truths):\n    while True:\n        pass\n"
PARSES = "def score(prompt, response, ground_truth):\n    return float(int(response) == int(ground_truth))\n"
RETURNS = "def score(prompt, response, ground_truth):\n    return {}\n"
RAISED = r"RewardFunctionError: reward function 'score' \({dir}/rewards.py\) raised on sample 0"
STOPPED = (r"checkpoint {dir}/run/checkpoints/step_0000\d\d cannot be restored", "trainer.resume=never")

CASES = [
    # --- the recipe file and the command line ---
    Case("yaml-unclosed-flow-mapping", "yaml", ("train", "{dir}/recipe.yaml"), 2, (r"{dir}/recipe.yaml, line 2, column 1: invalid YAML",),
         files(recipe__yaml="model: {source: tiny\n")),
    Case("yaml-tab-indentation", "yaml", ("train", "{dir}/recipe.yaml"), 2, (r"{dir}/recipe.yaml, line 2.*invalid YAML",), files(recipe__yaml="model:\n\tsource: tiny\n")),
    Case("yaml-top-level-list", "yaml", ("train", "{dir}/recipe.yaml"), 2, (r"{dir}/recipe.yaml: the top level must be a mapping",), files(recipe__yaml="- model\n- data\n")),
    Case("yaml-key-written-twice", "yaml", ("train", "{dir}/recipe.yaml"), 2, (r"{dir}/recipe.yaml, line 3, .*duplicate key 'actor' \(also on line 2\)",),
         files(recipe__yaml="model: {source: tiny}\nactor: {lr: 1.0e-4}\nactor: {lr: 2.0e-4}\n")),
    Case("yaml-python-tag", "yaml", ("train", "{dir}/recipe.yaml"), 2, (r"{dir}/recipe.yaml, line 1.*python/object/apply:os.system",),
         files(recipe__yaml="description: !!python/object/apply:os.system ['touch {dir}/ran']\n")),
    Case("recipe-not-utf8", "yaml", ("train", "{dir}/recipe.yaml"), 2, (r"{dir}/recipe.yaml: not a UTF-8 text file",), files(recipe__yaml=b"\xff\xfe\x00m\x00o")),
    Case("recipe-missing", "yaml", ("train", "{dir}/nope.yaml"), 2, (r"recipe '{dir}/nope.yaml' is neither a file nor a shipped recipe",)),
    Case("unknown-command", "yaml", ("trian", "quickstart"), 2, (r"invalid choice: 'trian'",)),
    Case("override-without-equals", "keys", train("trainer.total_steps"), 2, (r"override 'trainer.total_steps' must look like key.sub=value",)),
    # --- unknown or misspelt keys ---
    Case("unknown-section", "keys", train("trainr.total_steps=1"), 2, (r"trainr: unknown key; did you mean 'trainer'\?",)),
    Case("misspelt-override-key", "keys", train("actor.lrr=1e-4"), 2, (r"actor.lrr: unknown key; did you mean 'actor.lr'\?",)),
    Case("misspelt-key-in-file", "keys", ("train", "{dir}/recipe.yaml"), 2, (r"rollout.temprature: unknown key; did you mean 'rollout.temperature'\?",),
         files(recipe__yaml="model: {source: tiny}\nrollout: {temprature: 0.7}\n")),
    Case("misspelt-source-key", "keys", train("reward.sources=[{type: arithmetic, wieght: 2}]"), 2, (r"reward.sources.0.wieght: unknown key; did you mean 'reward.sources.0.weight'",)),
    Case("list-index-out-of-range", "keys", train("reward.sources.3.weight=2"), 2, (r"reward.sources is a list and there is no item 3: its only item is reward.sources.0",)),
    # --- wrong types ---
    Case("lr-not-a-number", "types", train("actor.lr=fast"), 2, (r"actor.lr: expected a float, got 'fast'",)),
    Case("n-fractional", "types", train("rollout.n=2.5"), 2, (r"rollout.n: expected an integer, got 2.5",)),
    Case("yes-for-a-name", "types", train("model.source=yes"), 2, (r"model.source: expected a string, got True .*quote it",)),
    Case("sources-not-a-list", "types", train("reward.sources=arithmetic"), 2, (r"reward.sources: expected a list, got 'arithmetic'",)),
    Case("section-as-a-number", "types", train("actor=5"), 2, (r"actor: expected a mapping, got 5",)),
    Case("lr-nan", "types", train("actor.lr=.nan"), 2, (r"actor.lr: expected a float, got nan",)),
    Case("eval-k-words", "types", train("trainer.eval_k=[one]"), 2, (r"trainer.eval_k.0: expected an integer, got 'one'",)),
    # --- values out of range ---
    Case("negative-lr", "ranges", train("actor.lr=-1e-4"), 2, (r"actor.lr: must be > 0, got -0.0001",)),
    Case("negative-clip", "ranges", train("actor.clip_low=-0.1"), 2, (r"actor.clip_low: must be >= 0, got -0.1",)),
    Case("n-zero", "ranges", train("rollout.n=0"), 2, (r"rollout.n: must be >= 1, got 0",)),
    Case("indivisible-mini-batch", "ranges", train("data.train_batch_size=3", "rollout.n=3"), 2,
         (r"data.train_batch_size \(3\) \* rollout.n \(3\) = 9 sequences per step is not divisible by actor.mini_batch_size \(4\)",)),
    Case("indivisible-micro-batch", "ranges", train("actor.micro_batch_size=3"), 2, (r"actor.mini_batch_size \(4\) is not divisible by actor.micro_batch_size \(3\)",)),
    Case("zero-temperature", "ranges", train("rollout.temperature=0"), 2, (r"rollout.temperature: must be > 0, got 0.0",)),
    Case("top-p-above-one", "ranges", train("rollout.top_p=1.5"), 2, (r"rollout.top_p: must be in \(0, 1\], got 1.5",)),
    Case("negative-total-steps", "ranges", train("trainer.total_steps=-1"), 2, (r"trainer.total_steps: must be >= 0, got -1",)),
    Case("misspelt-advantage", "ranges", train("algorithm.advantage=grop"), 2, (r"algorithm.advantage: unknown value 'grop' \(did you mean 'grpo'\?",)),
    Case("sequence-longer-than-the-model", "ranges", train("rollout.max_new_tokens=200"), 2, (r"rollout.max_new_tokens \(200\) = 208 exceeds model.tiny.max_position_embeddings \(128\)",)),
    Case("two-mistakes-at-once", "ranges", train("actor.lr=-1", "rollout.n=0"), 2, (r"actor.lr: must be > 0", r"rollout.n: must be >= 1")),
    # --- data files and rows ---
    Case("data-file-missing", "data", train("data.train.path={dir}/missing.jsonl"), 2, (r"data.train.path: file '{dir}/missing.jsonl' does not exist",)),
    Case("data-file-empty", "data", train("data.train.path={dir}/rows.jsonl"), 2, (r"data.train.path: '{dir}/rows.jsonl' has no rows",), files(rows__jsonl="")),
    Case("data-file-corrupt", "data", train("data.train.path={dir}/rows.jsonl"), 2, (r"data.train.path: {dir}/rows.jsonl:3 is not valid JSON",),
         files(rows__jsonl=jsonl(*ROWS, '{"prompt": "3+3=", "ground_truth":'))),
    Case("data-row-not-an-object", "data", train("data.train.path={dir}/rows.jsonl"), 2, (r"data.train.path: {dir}/rows.jsonl:2 is not a JSON object",),
         files(rows__jsonl=jsonl(ROWS[0], "[1, 2]"))),
    Case("data-row-missing-answer", "data", train("data.train.path={dir}/rows.jsonl"), 2,
         (r"data.train.answer_key: '{dir}/rows.jsonl' row 2 has no field 'ground_truth'",), files(rows__jsonl=jsonl(ROWS[0], {"prompt": "3+3="}))),
    Case("data-prompt-not-text", "data", train("data.train.path={dir}/rows.jsonl"), 2,
         (r"data.train.prompt_key: '{dir}/rows.jsonl' row 1: field 'prompt' must be non-empty text \(got int 5\)",), files(rows__jsonl=jsonl({"prompt": 5, "ground_truth": "5"}))),
    Case("data-ground-truth-list", "data", train("data.train.path={dir}/rows.jsonl"), 2,
         (r"data.train.answer_key: '{dir}/rows.jsonl' row 2: field 'ground_truth' must be text or a number \(got list",),
         files(rows__jsonl=jsonl(ROWS[0], {"prompt": "3+3=", "ground_truth": [6]}))),
    Case("data-ground-truth-null", "data", train("data.train.path={dir}/rows.jsonl"), 2, (r"row 1: field 'ground_truth' must be text or a number \(got NoneType",),
         files(rows__jsonl=jsonl({"prompt": "3+3=", "ground_truth": None}))),
    Case("data-wrong-prompt-key", "data", train("data.train.prompt_key=question"), 2, (r"data.train.prompt_key: 'builtin:arithmetic' row 1 has no field 'question'",)),
    Case("data-eval-file-corrupt", "data", train("data.eval.path={dir}/eval.jsonl"), 2, (r"data.eval.path: {dir}/eval.jsonl:1 is not valid JSON",), files(eval__jsonl="{oops}\n")),
    Case("data-unknown-builtin", "data", train("data.train.path=builtin:chess"), 2, (r"data.train.path: unknown builtin dataset 'chess'",)),
    Case("data-extractor-finds-nothing", "data", train("data.train.path={dir}/rows.jsonl", "data.train.answer_extractor=gsm8k"), 2,
         (r"data.train.answer_extractor: '{dir}/rows.jsonl' row 1: the 'gsm8k' extractor finds no answer",), files(rows__jsonl=jsonl(*ROWS))),
    Case("prompts-all-too-long", "data", train("data.train.path={dir}/rows.jsonl"), 2,
         (r"data.max_prompt_tokens: every prompt of data.train \(2 rows\) is longer than 8 tokens",),
         files(rows__jsonl=jsonl(*({"prompt": "What is the sum of 12 and 30? " * i, "ground_truth": "42"} for i in (1, 2))))),
    Case("template-names-a-missing-field", "data", train("data.prompt_template='Q: {prompt} ({level})'"), 2, (r"data.prompt_template: the template names field 'level'",)),
    # one more step: re-launched as it was, the finished prior run would only be reported
    Case("data-missing-on-resume", "data", train("data.train.path={dir}/missing.jsonl", "trainer.total_steps=2"), 2, (r"data.train.path: file '{dir}/missing.jsonl' does not exist",), prior=True),
    # --- custom reward functions ---
    Case("reward-file-missing", "reward", train(function_source()), 2, (r"reward.sources.0: the file '{dir}/rewards.py' of reward function 'score' does not exist",)),
    Case("reward-syntax-error", "reward", train(function_source()), 2, (r"reward.sources.0: cannot import {dir}/rewards.py \(for reward function 'score'\): line 1: SyntaxError",),
         files(rewards__py="def score(prompt, response, ground_truth)\n    return 1.0\n")),
    Case("reward-function-missing", "reward", train(function_source()), 2, (r"{dir}/rewards.py has no function 'score' \(functions defined there: other\)",),
         files(rewards__py="def other(prompt, response, ground_truth):\n    return 1.0\n")),
    Case("reward-signature-wrong", "reward", train(function_source()), 2, (r"reward.sources.0: reward function 'score' \({dir}/rewards.py\) cannot be called as",),
         files(rewards__py="def score(text):\n    return 1.0\n")),
    Case("reward-timeout-not-positive", "reward", train(function_source(", timeout_s: 0")), 2, (r"reward.sources.0.timeout_s: must be > 0",)),
    Case("reward-on-error-unknown", "reward", train("reward.on_error=ignore"), 2, (r"reward.on_error: unknown value 'ignore'",)),
    Case("reward-import-fails-on-resume", "reward", train(function_source(), "trainer.total_steps=2"), 2,
         (r"cannot import {dir}/rewards.py \(for reward function 'score'\): line 1: ModuleNotFoundError: No module named 'no_such_judge'",),
         files(rewards__py="import no_such_judge\n"), prior=True),
    Case("reward-raises", "reward", train(function_source(), "trainer.total_steps=2"), 1,
         (RAISED, r"ValueError: cannot parse '.*' \(at line 2 of {dir}/rewards.py, in score\)"), files(rewards__py=RAISES), prior=True),
    Case("reward-returns-nan", "reward", train(function_source()), 1, (r"reward function 'score' \({dir}/rewards.py\) returned nan for sample 0; a score must be finite",),
         files(rewards__py=RETURNS.format("float('nan')"))),
    Case("reward-returns-text", "reward", train(function_source()), 1, (r"reward function 'score' \({dir}/rewards.py\) returned 'yes' \(str\) for sample 0",),
         files(rewards__py=RETURNS.format("'yes'"))),
    Case("reward-batched-wrong-length", "reward", train(function_source(", batched: true")), 1,
         (r"batched reward function 'score' \({dir}/rewards.py\) returned 1 results for 4 samples",),
         files(rewards__py="def score(prompts, responses, ground_truths):\n    return [1.0]\n")),
    Case("reward-never-returns", "reward", train(function_source(", timeout_s: 0.5"), "trainer.total_steps=2"), 1,
         (r"reward function 'score' \({dir}/rewards.py\) did not return within its timeout_s of 0.5 s on sample 0",), files(rewards__py=SLEEPS), prior=True),
    Case("reward-batched-never-returns", "reward", train(function_source(", batched: true, timeout_s: 0.3")), 1,
         (r"batched reward function 'score' \({dir}/rewards.py\) did not return within its timeout_s of 0.3 s on a batch of 4 samples",), files(rewards__py=SPINS)),
    Case("empty-generations", "reward", train(function_source(), "model.source=pretrained", "model.path={dir}/model"), 1,
         (RAISED + r" \(response ''\): ValueError: invalid literal for int\(\) with base 10: ''",), both(files(rewards__py=PARSES), model_copy(eos_only))),
    # --- the model ---
    Case("model-path-missing", "model", train("model.source=pretrained", "model.path={dir}/no-such-model"), 2, (r"model.path: '{dir}/no-such-model' does not exist",)),
    Case("model-dir-empty", "model", train("model.source=pretrained", "model.path={dir}/model"), 2, (r"model.path: local directory '{dir}/model' has no config.json: it is not a Hugging Face model directory",),
         model_copy(lambda model: [path.unlink() for path in model.iterdir()])),
    Case("model-config-corrupt", "model", train("model.source=pretrained", "model.path={dir}/model"), 2, (r"model.path: .*{dir}/model/config.json.* not a valid JSON",),
         model_copy(lambda model: (model / "config.json").write_text("{not json"))),
    Case("model-weights-corrupt", "model", train("model.source=pretrained", "model.path={dir}/model"), 2,
         (r"model.path: cannot load a causal LM from '{dir}/model': SafetensorError",), model_copy(lambda model: (model / "model.safetensors").write_bytes(b"\0" * 64))),
    Case("tokenizer-without-pad-or-eos", "model", train("model.source=pretrained", "model.path={dir}/model"), 2,
         (r"model.path: the tokenizer of '{dir}/model' has neither a pad nor an EOS token",), model_copy(without_pad_or_eos)),
    Case("tiny-model-path-is-a-hub-name", "model", train("model.path=Qwen/Qwen2.5-0.5B"), 2, (r"model.path: 'Qwen/Qwen2.5-0.5B' is not a local directory",)),
    # --- the run directory and checkpoints ---
    Case("run-directory-holds-a-run", "run", train("trainer.resume=never"), 2, (r"trainer.output_dir: '{dir}/run' already holds a run",), prior=True),
    Case("resume-from-nowhere", "run", train("trainer.resume={dir}/nope"), 2, (r"trainer.resume: '{dir}/nope' is not a checkpoint directory",)),
    # one more step, so that the finished prior run resumes (re-launched as it was, it is only reported)
    Case("corrupt-checkpoint-loop-state", "run", train("trainer.total_steps=2"), 1, STOPPED,
         damage("checkpoints/step_000001/loop.pt", b"not a checkpoint"), prior=True),
    Case("corrupt-checkpoint-weights", "run", train("trainer.total_steps=2"), 1, STOPPED,
         damage("checkpoints/step_000001/actor/engine.pt", b"\0" * 16), prior=True),
    Case("checkpoint-pointer-dangling", "run", train(), 2, (r"trainer.resume: {dir}/run/checkpoints/latest names 'step_000007', which is no checkpoint",),
         damage("checkpoints/latest", b"step_000007"), prior=True),
    Case("export-of-no-run", "run", ("export", "{dir}/nope", "{dir}/out"), 2, (r"'{dir}/nope' is not a run directory",)),
    Case("output-dir-is-a-file", "run", train(), 2, (r"trainer.output_dir: '{dir}/run' is a file",), files(run="not a directory")),
]


@pytest.fixture(scope="module")
def prior(tmp_path_factory) -> Path:
    """A finished one-step tiny run with its checkpoint, to be copied into a case's directory."""
    out = tmp_path_factory.mktemp("prior")
    assert main([arg.replace("{dir}", str(out)) for arg in train()]) == 0
    return out / "run"


def snapshot(directory: Path) -> dict[str, str]:
    """sha256 of every file under `directory` but config.yaml and the launch records (a launch
    that gets as far as the run directory adds its own configs/launch_NNN.yaml), by relative path."""
    return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*"))
            if path.is_file() and path.name != "config.yaml" and path.parent.name != "configs"}


def prepare(case: Case, case_dir: Path, prior_run: Path) -> tuple[list[str], dict[str, str]]:
    """Set the case up in `case_dir`; (its argv, the snapshot of the prior run copied there)."""
    before: dict[str, str] = {}
    if case.prior:
        shutil.copytree(prior_run, case_dir / "run")
    if case.set_up is not None:
        case.set_up(case_dir, prior_run)
    if case.prior:
        before = snapshot(case_dir / "run")
    return [arg.replace("{dir}", str(case_dir)) for arg in case.argv], before


def check(case: Case, case_dir: Path, code: int, out: str, err: str, before: dict[str, str]) -> None:
    """The exit status, a one-paragraph message naming the culprit, no traceback, outputs intact."""
    assert code == case.code, f"exit status {code}, expected {case.code}; stderr:\n{err}"
    assert "Traceback (most recent call last)" not in err + out
    assert "error: " in err, f"no error message; stderr:\n{err}"
    paragraph = err[err.rfind("\n", 0, err.rindex("error: ")) + 1:].strip()
    assert "\n" not in paragraph, f"the message spans several lines:\n{paragraph}"
    for pattern in case.culprit:
        assert re.search(pattern.replace("{dir}", re.escape(str(case_dir))), paragraph), f"{pattern!r} not in:\n{paragraph}"
    if case.prior:
        assert snapshot(case_dir / "run") == before, "the earlier run's files changed"
    assert not (case_dir / "ran").exists(), "a YAML tag ran code"


def run_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def param(case: Case):
    marks = [pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [param(case) for case in CASES])
def test_bad_input(case: Case, tmp_path: Path, prior: Path, capsys):
    argv, before = prepare(case, tmp_path, prior)
    capsys.readouterr()
    code, out, err = run_in_process(argv, capsys)
    check(case, tmp_path, code, out, err, before)


THROUGH_A_PROCESS = ["yaml-unclosed-flow-mapping", "reward-raises"]


@pytest.mark.parametrize("case", [param(case) for case in CASES if case.id in THROUGH_A_PROCESS])
def test_bad_input_through_a_real_process(case: Case, tmp_path: Path, prior: Path):
    argv, before = prepare(case, tmp_path, prior)
    done = run_cli(argv, tmp_path)
    check(case, tmp_path, done.returncode, done.stdout, done.stderr, before)


def run_cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "rlhf.cli.main", *argv], check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # 6 s
def test_debug_shows_the_traceback(tmp_path: Path):
    """`--debug` is the one way to a traceback: the failing function's, chained, included."""
    (tmp_path / "rewards.py").write_text(RAISES)
    argv = [arg.replace("{dir}", str(tmp_path)) for arg in train(function_source())]
    done = run_cli(["--debug", *argv], tmp_path)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and f'File "{tmp_path}/rewards.py", line 2, in score' in done.stderr
    assert "RewardFunctionError: reward function 'score'" in done.stderr


@pytest.mark.parametrize("change", [lambda model: without_pad_or_eos(model, keep_eos=True), eos_only],
                         ids=["tokenizer-without-pad-token", "empty-generations"])
def test_odd_but_usable_input_trains(change, tmp_path: Path, prior: Path, caplog):
    """Neither is a mistake: a tokenizer without a pad token pads with its EOS (and says so),
    and responses that are only EOS score 0 with the builtin reward, which takes any text."""
    model_copy(change)(tmp_path, prior)
    assert main([arg.replace("{dir}", str(tmp_path)) for arg in train("model.source=pretrained", "model.path={dir}/model")]) == 0
    last = read_jsonl(tmp_path / "run" / "metrics.jsonl")[-1]
    assert last["step"] == 1 and math.isfinite(last["actor/pg_loss"])
    if change is eos_only:
        assert last["response_length/mean"] == 1.0 and last["reward/mean"] == 0.0
    else:
        assert "has no pad token; using its EOS token" in caplog.text


def test_the_table_sweeps_every_kind_of_bad_input():
    assert len(CASES) >= 40 and len({case.id for case in CASES}) == len(CASES)
    assert {case.category for case in CASES} == {"yaml", "keys", "types", "ranges", "data", "reward", "model", "run"}
    assert {case.code for case in CASES} == {1, 2}
