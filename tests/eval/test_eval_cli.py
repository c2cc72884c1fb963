"""`rlhf eval` end to end on a tiny model: a run directory and its exported model give the same
numbers, deterministically for a seed; per-source breakdown; the scaling curve; periodic
pass@k during training; errors that name the argument."""

import json
from pathlib import Path

import matplotlib.image
import pytest
from tiny_helpers import tiny_reward_model_dir

from rlhf.cli.main import main
from rlhf.config.schema import ArithmeticTaskConfig, DatasetConfig
from rlhf.data.prompts import load_rows
from rlhf.logging.jsonl import read_jsonl

# a short SFT warm start so that some answers are right (a random tiny model gets none)
TRAIN = ["trainer.total_steps=1", "sft.max_steps=60", "sft.eval_every=1000", "sft.val_size=16", "data.eval.size=32",
         "data.train_batch_size=4", "rollout.n=4", "actor.mini_batch_size=8", "actor.micro_batch_size=4",
         "trainer.num_threads=1", "trainer.eval_k=[1,2]"]
SAMPLING = ["--k", "1,4", "--n", "8"]
GREEDY_KEYS = {"eval/accuracy", "eval/reward", "eval/response_length"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(run directory after one RL step, its checkpoint exported as a model directory)."""
    root = tmp_path_factory.mktemp("eval")
    run_dir, exported = root / "run", root / "exported"
    assert main(["train", "quickstart", f"trainer.output_dir={run_dir}", *TRAIN]) == 0
    assert main(["export", str(run_dir), str(exported)]) == 0
    return run_dir, exported


@pytest.fixture(scope="module")
def run_report(trained) -> dict:
    run_dir, _ = trained
    assert main(["eval", str(run_dir), "trainer.num_threads=1", *SAMPLING]) == 0
    return json.loads((run_dir / "eval" / "step_000001" / "eval.json").read_text())


def test_periodic_evaluation_reports_pass_and_maj_at_k(trained):
    records = read_jsonl(trained[0] / "metrics.jsonl")
    for record in (records[0], records[-1]):
        for key in ("eval/accuracy", "eval/pass@1", "eval/pass@2", "eval/maj@1", "eval/maj@2"):
            assert 0.0 <= record[key] <= 1.0, key
        assert record["eval/pass@2"] >= record["eval/pass@1"]
        assert 0 < record["eval/sampled_response_length"] <= 5


def test_eval_of_a_run_directory(trained, run_report, capsys):
    run_dir, _ = trained
    metrics = run_report["metrics"]
    assert run_report["checkpoint"] == "step_000001" and run_report["num_prompts"] == 32
    assert run_report["samples_per_prompt"] == 8 and run_report["k"] == [1, 4]
    assert set(metrics) == GREEDY_KEYS | {"eval/sampled_response_length", "eval/pass@1", "eval/pass@4", "eval/maj@1", "eval/maj@4"}
    assert all(0.0 <= metrics[key] <= 1.0 for key in metrics if "length" not in key)
    assert 0 < metrics["eval/pass@1"] <= metrics["eval/pass@4"]
    assert metrics["eval/maj@1"] == pytest.approx(metrics["eval/pass@1"])
    # greedy decoding of the checkpoint reproduces the run's final evaluation
    final = read_jsonl(run_dir / "metrics.jsonl")[-1]
    assert metrics["eval/accuracy"] == pytest.approx(final["eval/accuracy"])
    assert metrics["eval/response_length"] == pytest.approx(final["eval/response_length"])
    out = run_dir / "eval" / "step_000001"
    assert matplotlib.image.imread(out / "scaling.png").shape[:2] == (400, 1000)
    curve = json.loads((out / "scaling.json").read_text())
    assert [point["k"] for point in curve["points"]] == [1, 2, 4, 8]
    assert curve["points"][2]["pass@k"] == pytest.approx(metrics["eval/pass@4"])
    assert curve["points"][3]["tokens_per_prompt"] == pytest.approx(8 * metrics["eval/sampled_response_length"])
    assert not list(out.glob(".policy-*"))  # the temporary export is gone


def test_a_model_directory_gives_the_same_numbers_for_the_same_seed(trained, run_report, tmp_path):
    _, exported = trained
    common = ["eval", str(exported), "quickstart", "data.eval.size=32", "trainer.num_threads=1"]
    assert main([*common, *SAMPLING, "--out", str(tmp_path / "seed0")]) == 0
    assert main([*common, "trainer.seed=1", *SAMPLING, "--out", str(tmp_path / "seed1")]) == 0
    same = json.loads((tmp_path / "seed0" / "eval.json").read_text())["metrics"]
    other = json.loads((tmp_path / "seed1" / "eval.json").read_text())["metrics"]
    assert same == run_report["metrics"]
    assert other["eval/accuracy"] == same["eval/accuracy"]  # greedy does not depend on the seed
    assert other["eval/sampled_response_length"] != same["eval/sampled_response_length"]


def test_per_source_breakdown(trained, tmp_path, capsys):
    rows = load_rows(DatasetConfig(path="builtin:arithmetic", split="test", size=40), ArithmeticTaskConfig(), "data.eval")
    data = tmp_path / "two_sources.jsonl"
    data.write_text("".join(json.dumps({"prompt": row["prompt"], "ground_truth": row["ground_truth"],
                                        "data_source": "first" if i < 20 else "second"}) + "\n" for i, row in enumerate(rows)))
    out = tmp_path / "out"
    # the run's recipe caps its own eval set at 32 prompts; all 40 of --data are evaluated
    assert main(["eval", str(trained[0]), "trainer.num_threads=1", "--data", str(data), "--k", "1,2", "--out", str(out)]) == 0
    report = json.loads((out / "eval.json").read_text())
    metrics = report["metrics"]
    assert report["prompts_per_source"] == {"first": 20, "second": 20}
    for source in ("first", "second"):
        for metric in ("accuracy", "reward", "response_length", "sampled_response_length", "pass@1", "pass@2", "maj@1", "maj@2"):
            assert f"eval/{source}/{metric}" in metrics
    for metric in ("accuracy", "pass@2", "maj@2"):  # equal sizes: the overall value is the mean
        assert metrics[f"eval/{metric}"] == pytest.approx((metrics[f"eval/first/{metric}"] + metrics[f"eval/second/{metric}"]) / 2)
    assert set(json.loads((out / "scaling.json").read_text())["per_source"]) == {"first", "second"}
    table = capsys.readouterr().out
    assert "first" in table and "second" in table and "maj@2" in table


def test_greedy_only_without_k(trained, tmp_path):
    out = tmp_path / "out"
    assert main(["eval", str(trained[1]), "quickstart", "data.eval.size=8", "trainer.num_threads=1", "--out", str(out)]) == 0
    assert set(json.loads((out / "eval.json").read_text())["metrics"]) == GREEDY_KEYS  # one data source: no breakdown
    assert not (out / "scaling.png").exists()


def test_over_long_prompts_are_dropped_and_counted(trained, tmp_path):
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps({"prompt": prompt, "ground_truth": "1"}) + "\n" for prompt in ("1+0=", "1" * 40 + "+0=", "0+1=")))
    out = tmp_path / "out"
    assert main(["eval", str(trained[1]), "quickstart", "data.max_prompt_tokens=8", "trainer.num_threads=1", "--data", str(data), "--out", str(out)]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["dropped_prompts"] == 1 and report["num_prompts"] == 2


def test_errors_name_the_argument(trained, tmp_path, capsys):
    run_dir, exported = trained
    cases = [
        (["eval", str(tmp_path / "nowhere"), "quickstart"], "MODEL_OR_RUN: "),
        (["eval", str(exported)], "RECIPE: "),
        (["eval", str(run_dir), "quickstart"], "brings its own recipe"),
        (["eval", str(run_dir), "--k", "0"], "--k: every k must be >= 1"),
        (["eval", str(run_dir), "--k", "1,a"], "--k: expected comma-separated whole numbers"),
        (["eval", str(run_dir), "--k", "1,16", "--n", "8"], "--k: k = 16 needs at least that many samples per prompt, but --n is 8"),
        (["eval", str(exported), "quickstart", "--n", "4"], "--n: "),
        (["eval", str(exported), "quickstart", "--step", "1"], "--step: "),
        (["eval", str(run_dir), "--step", "7"], "rlhf eval: no checkpoint step_000007"),
        (["eval", str(run_dir), "--data", str(tmp_path / "missing.jsonl")], "--data: data.eval.path: file"),
        (["validate", "quickstart", "trainer.eval_k=[0,4]"], "trainer.eval_k: must be a list of integers >= 1"),
        (["eval", str(run_dir), "--k", "1,4", "--search", "best_of_n"], "--search best_of_n: the strategies select through a reward model"),
        (["eval", str(run_dir), "--k", "1,4", "--search", "beam_of_n", "--reward-model", str(exported)], "--search: unknown strategy 'beam_of_n'"),
        (["eval", str(exported), "quickstart", "--search", "weighted_vote", "--reward-model", str(exported)], "judged at k samples per prompt; name the k values"),
        (["eval", str(run_dir), "--k", "1,4", "--reward-model", str(exported)], "--reward-model: only used by --search"),
        (["eval", str(run_dir), "--k", "1,4", "--search", "best_of_n", "--reward-model", str(exported)],
         "--reward-model: '%s' is not a reward-model directory: it has no reward_model.json" % exported),
        (["eval", str(run_dir), "--search", "step_beam", "--reward-model", str(reward_model_dir(tmp_path, "classifier"))],
         "--search step_beam: the beam scores partial solutions step by step and needs a PRM"),
        (["eval", str(run_dir), "--search", "step_beam", "--beam-width", "0", "--reward-model", str(exported)], "--beam-width: must be >= 1, got 0"),
        (["eval", str(run_dir), "--search", "step_beam", "--beam-width", "0,2", "--reward-model", str(exported)], "--beam-width: must be >= 1, got 0 in [0, 2]"),
        (["eval", str(run_dir), "--search", "step_beam", "--beam-width", "a", "--reward-model", str(exported)],
         "--beam-width: expected a whole number or comma-separated whole numbers like 1,2,4, got 'a'"),
        (["eval", str(run_dir), "eval.search.beam_width=[2,0]"], "eval.search.beam_width: must be >= 1, got 0 in [2, 0]"),
        (["validate", "quickstart", "eval.search.strategies=[beam]"], "eval.search.strategies: unknown value 'beam' (did you mean 'step_beam'?"),
        (["validate", "quickstart", "eval.search.strategies=[best_of_n]"], "eval.search.reward_model: the strategies best_of_n select through a reward model"),
        (["validate", "quickstart", "eval.search.beam_k=0"], "eval.search.beam_k: must be >= 1, got 0"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    assert not (run_dir / "eval" / "step_000007").exists()


def reward_model_dir(root: Path, kind: str, step_split: str | None = "(?<=.)") -> Path:
    """A tiny random ORM (`classifier`) or PRM (`two_class`, '#' after each step; by default one
    step per character) with the sidecar `rlhf rm` writes."""
    return tiny_reward_model_dir(root / kind, kind, step_split=step_split)


@pytest.mark.parametrize("kind", ["classifier", "two_class"])
def test_search_strategies_through_a_reward_model(trained, tmp_path, kind, capsys):
    out = tmp_path / "out"
    args = ["eval", str(trained[1]), "quickstart", "data.eval.size=32", "trainer.num_threads=1", *SAMPLING,
            "--search", "best_of_n,weighted_vote", "--reward-model", str(reward_model_dir(tmp_path, kind)), "--aggregate", "product"]
    assert main([*args, "--out", str(out)]) == 0
    report = json.loads((out / "eval.json").read_text())
    metrics = report["metrics"]
    assert report["search"]["type"] == {"classifier": "orm", "two_class": "prm"}[kind]
    assert report["search"]["aggregate"] == (None if kind == "classifier" else "product")
    for k in (1, 4):
        assert 0.0 <= metrics[f"eval/best_of_n@{k}"] <= metrics[f"eval/pass@{k}"] + 1e-9  # selection never beats the oracle
        assert 0.0 <= metrics[f"eval/weighted_vote@{k}"] <= metrics[f"eval/pass@{k}"] + 1e-9
    # one sample: best-of-1 is a random sample, a vote of one is that sample's answer
    assert metrics["eval/best_of_n@1"] == pytest.approx(metrics["eval/pass@1"])
    assert metrics["eval/weighted_vote@1"] == pytest.approx(metrics["eval/maj@1"])
    curve = json.loads((out / "scaling.json").read_text())
    assert [sorted(point) for point in curve["points"]][0] == sorted(["k", "tokens_per_prompt", "pass@k", "maj@k", "best_of_n@k", "weighted_vote@k"])
    assert curve["points"][2]["best_of_n@k"] == pytest.approx(metrics["eval/best_of_n@4"])
    assert matplotlib.image.imread(out / "scaling.png").shape[:2] == (400, 1000)
    assert "best_of_n@4" in capsys.readouterr().out
    # the same seed gives the same numbers (the vote's random subsets are seeded too)
    assert main([*args, "--out", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "eval.json").read_text())["metrics"] == metrics


STEP_BEAM_POINT_KEYS = {"beam_width", "k", "token_budget", "accuracy", "finished", "tokens_per_prompt", "steps_per_prompt"}


def test_step_beam_line_through_a_prm(trained, tmp_path, capsys):
    out = tmp_path / "out"
    prm = reward_model_dir(tmp_path, "two_class", step_split=None)  # blank lines: an arithmetic answer is one step
    common = ["eval", str(trained[1]), "quickstart", "data.eval.size=16", "trainer.num_threads=1", "--k", "1,2", "--n", "4",
              "--search", "step_beam,best_of_n", "--reward-model", str(prm), "--beam-k", "2"]
    assert main([*common, "--beam-width", "2,1,2", "--out", str(out)]) == 0  # unsorted, a duplicate: the line of widths 1, 2
    report = json.loads((out / "eval.json").read_text())
    metrics = report["metrics"]
    assert report["search"]["step_beam"] == [{"beam_width": 1, "k": 2, "token_budget": 1 * 2 * 5},  # quickstart: 5 new tokens
                                             {"beam_width": 2, "k": 2, "token_budget": 2 * 2 * 5}]
    for name in ("step_beam", "step_beam_tokens", "step_beam_steps", "step_beam_finished"):  # the headline: the widest
        assert metrics[f"eval/{name}"] == metrics[f"eval/{name}@2"] and f"eval/{name}@1" in metrics
    assert 0.0 <= metrics["eval/step_beam@1"] <= 1.0 and metrics["eval/step_beam_finished@1"] == metrics["eval/step_beam_finished@2"] == 1.0
    # one round: width x k one-step solutions sampled per prompt, each at least its EOS
    assert metrics["eval/step_beam_steps@1"] == 2.0 and metrics["eval/step_beam_steps@2"] == 4.0
    assert 2.0 <= metrics["eval/step_beam_tokens@1"] < metrics["eval/step_beam_tokens@2"] <= 20.0
    curve = json.loads((out / "scaling.json").read_text())
    line = curve["step_beam"]
    assert [point["beam_width"] for point in line] == [1, 2] and all(set(point) == STEP_BEAM_POINT_KEYS for point in line)
    assert [point["accuracy"] for point in line] == [metrics["eval/step_beam@1"], metrics["eval/step_beam@2"]]
    assert [point["tokens_per_prompt"] for point in line] == [metrics["eval/step_beam_tokens@1"], metrics["eval/step_beam_tokens@2"]]
    assert [point["steps_per_prompt"] for point in line] == [2.0, 4.0] and [point["finished"] for point in line] == [1.0, 1.0]
    assert matplotlib.image.imread(out / "scaling.png").shape[:2] == (400, 1000)
    table = capsys.readouterr().out
    assert "step beam w=1" in table and "step beam w=2 tokens / prompt" in table
    # each width is searched from the seed: alone it finds what it found in the line
    assert main([*common, "--beam-width", "1", "--out", str(tmp_path / "one")]) == 0
    alone = json.loads((tmp_path / "one" / "eval.json").read_text())
    assert alone["search"]["step_beam"] == [{"beam_width": 1, "k": 2, "token_budget": 10}]
    for name in ("step_beam", "step_beam_tokens", "step_beam_steps", "step_beam_finished"):
        assert alone["metrics"][f"eval/{name}"] == alone["metrics"][f"eval/{name}@1"] == metrics[f"eval/{name}@1"]


def test_step_beam_line_from_a_recipe_without_samples(trained, tmp_path):
    prm = reward_model_dir(tmp_path, "two_class", step_split=None)
    recipe = tmp_path / "beam.yaml"
    quickstart = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"
    recipe.write_text(quickstart.read_text() + f"eval:\n  search:\n    strategies: [step_beam]\n    reward_model: {json.dumps(str(prm))}\n"
                      "    beam_width: [2, 1]\n    beam_k: 2\n")
    common = ["eval", str(trained[1]), str(recipe), "data.eval.size=16", "trainer.num_threads=1"]
    assert main([*common, "--out", str(tmp_path / "recipe")]) == 0
    report = json.loads((tmp_path / "recipe" / "eval.json").read_text())
    assert [point["beam_width"] for point in report["search"]["step_beam"]] == [1, 2]
    assert {"eval/step_beam@1", "eval/step_beam@2", "eval/step_beam_tokens@1", "eval/step_beam_tokens@2"} <= set(report["metrics"])
    # no --k: no samples, and the curve is the step beam's line alone
    curve = json.loads((tmp_path / "recipe" / "scaling.json").read_text())
    assert curve["points"] == [] and curve["samples_per_prompt"] == 0 and [point["beam_width"] for point in curve["step_beam"]] == [1, 2]
    assert matplotlib.image.imread(tmp_path / "recipe" / "scaling.png").shape[:2] == (400, 1000)
    # a flag wins over the key: one width, as a plain number
    assert main([*common, "--beam-width", "2", "--out", str(tmp_path / "flag")]) == 0
    flag = json.loads((tmp_path / "flag" / "eval.json").read_text())
    assert flag["search"]["step_beam"] == [{"beam_width": 2, "k": 2, "token_budget": 20}]
    assert flag["metrics"]["eval/step_beam@2"] == report["metrics"]["eval/step_beam@2"] and "eval/step_beam@1" not in flag["metrics"]


def test_search_on_a_run_directory_matches_its_exported_model(trained, tmp_path):
    run_dir, exported = trained
    search = ["--search", "best_of_n,weighted_vote", "--reward-model", str(reward_model_dir(tmp_path, "classifier"))]
    assert main(["eval", str(run_dir), "trainer.num_threads=1", *SAMPLING, *search, "--out", str(tmp_path / "run")]) == 0
    assert main(["eval", str(exported), "quickstart", "data.eval.size=32", "trainer.num_threads=1", *SAMPLING, *search, "--out", str(tmp_path / "model")]) == 0
    from_run, from_model = (json.loads((tmp_path / name / "eval.json").read_text())["metrics"] for name in ("run", "model"))
    assert from_run["eval/best_of_n@4"] == from_model["eval/best_of_n@4"] and from_run["eval/weighted_vote@4"] == from_model["eval/weighted_vote@4"]


def test_search_from_the_recipe_with_flags_over_it(trained, tmp_path):
    orm = reward_model_dir(tmp_path, "classifier")
    common = ["eval", str(trained[1]), "quickstart", "data.eval.size=32", "trainer.num_threads=1", *SAMPLING]
    recipe = ["eval.search.strategies=[best_of_n,weighted_vote]", f"eval.search.reward_model={orm}"]
    assert main([*common, *recipe, "--out", str(tmp_path / "recipe")]) == 0
    assert main([*common, "--search", "best_of_n,weighted_vote", "--reward-model", str(orm), "--out", str(tmp_path / "flags")]) == 0
    from_recipe, from_flags = (json.loads((tmp_path / name / "eval.json").read_text()) for name in ("recipe", "flags"))
    assert from_recipe["metrics"] == from_flags["metrics"] and from_recipe["search"]["strategies"] == ["best_of_n", "weighted_vote"]
    assert main([*common, *recipe, "--search", "best_of_n", "--out", str(tmp_path / "over")]) == 0  # the flag wins
    over = json.loads((tmp_path / "over" / "eval.json").read_text())
    assert over["search"]["strategies"] == ["best_of_n"] and "eval/weighted_vote@4" not in over["metrics"]
