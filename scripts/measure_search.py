"""Measure test-time search on the step-format addition task: accuracy against generated tokens
per problem for greedy decoding, majority voting, best-of-N and the weighted vote through an
ORM and through a PRM, and the PRM-guided step beam, over several seeds of the policy.

    python scripts/measure_search.py [--seeds 0 1 2] [--sft-steps 300] [--eval-size 200]
        [--n 16] [--beams 1x2 2x2 2x4 4x4] [--out runs/measure-search]

1. Data (`reward_models.synthetic`): 2-digit sums solved column by column, one step per
   paragraph ("7+5=12", blank line, "0+4+1=5", blank line, "answer 52"). The policy's SFT
   data are correct solutions of the training pairs; the held-out problems are test pairs with
   the number as ground truth, judged by the `gsm8k` verifier (the answer is the last number).
2. Reward models, trained once with `rlhf rm`: the PRM recipe `rm/prm_arithmetic` (step labels,
   '#' after each step) and a BCE ORM on the same step-format solutions, half with an error
   (labelled by whether the final answer is right).
3. Per seed: a tiny policy SFT'd briefly (`rlhf sft`, so that it is right on some problems and
   wrong on others), then `rlhf eval` with n samples per problem: greedy, pass@k, maj@k,
   best_of_n@k and weighted_vote@k through the ORM and through the PRM, and one step beam per
   `--beams` setting (width x k) through the PRM.
4. Prints the table (mean over seeds, tokens per problem beside each accuracy) and writes
   `<out>/results.json` and `<out>/search_scaling.png`.

Not a test: its numbers go into the issue notes, whatever they show.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from reward_models.synthetic import solution_steps, step_labelled_solutions
from rlhf.data.arithmetic import arithmetic_rows

STEP_JOIN = "\n\n"
"""Between two steps of a solution: a blank line, the PRM source's default step delimiter."""
TASK = ["reward.sources=[{type: gsm8k}]", "rollout.max_new_tokens=24", "data.max_prompt_tokens=8", "trainer.num_threads=1",
        "rollout.temperature=1.0"]
"""Overrides of the quickstart recipe shared by SFT and evaluation."""


def solution_text(prompt: str) -> str:
    """The correct step-format solution of a prompt like '07+45='."""
    a, b = (int(part) for part in prompt.rstrip("=").split("+"))
    return STEP_JOIN.join(solution_steps(a, b, digits=2))


def write_data(out: Path, eval_size: int) -> dict[str, Path]:
    """The policy's SFT rows, the held-out problems and the ORM's labelled solutions."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"{name}.jsonl" for name in ("sft", "eval", "orm")}
    train = arithmetic_rows("train", 2, 0.1, 0)
    test = arithmetic_rows("test", 2, 0.1, 0)[:eval_size]
    write_jsonl(paths["sft"], [{"prompt": row["prompt"], "ground_truth": solution_text(row["prompt"])} for row in train])
    write_jsonl(paths["eval"], [{"prompt": row["prompt"], "ground_truth": row["ground_truth"]} for row in test])
    write_jsonl(paths["orm"], [{"prompt": example["prompt"], "response": STEP_JOIN.join(example["steps"]), "label": int(all(example["labels"]))}
                               for example in step_labelled_solutions("train", size=6000)])
    return paths


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def rlhf(*args: str) -> None:
    """Run one `rlhf` command in a subprocess; stop with its output if it fails."""
    completed = subprocess.run([sys.executable, "-m", "rlhf.cli.main", *args], env={**os.environ, "HF_HUB_OFFLINE": "1"},
                               capture_output=True, text=True)
    if completed.returncode != 0:
        sys.exit(f"rlhf {' '.join(args[:2])} failed (exit {completed.returncode}):\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")


def train_reward_models(out: Path, orm_data: Path) -> dict[str, Path]:
    """The PRM and the ORM (trained once, reused when present)."""
    models = {"prm": out / "prm", "orm": out / "orm"}
    if not (models["prm"] / "model" / "reward_model.json").exists():
        rlhf("rm", "rm/prm_arithmetic", f"output_dir={models['prm']}")
    if not (models["orm"] / "model" / "reward_model.json").exists():
        rlhf("rm", "rm/orm_labels_arithmetic", f"output_dir={models['orm']}", f"data.source={orm_data}", "train.epochs=10")
    return {name: path / "model" for name, path in models.items()}


def evaluate_seed(out: Path, seed: int, data: dict[str, Path], reward_models: dict[str, Path], args: argparse.Namespace) -> dict:
    """SFT one policy, then evaluate it with every strategy; the metrics of each evaluation."""
    run = out / f"policy-seed-{seed}"
    if not (run / "sft_model" / "config.json").exists():
        rlhf("sft", "quickstart", *TASK, f"data.train.path={data['sft']}", f"trainer.output_dir={run}", f"trainer.seed={seed}",
             f"sft.max_steps={args.sft_steps}", "sft.stop_at_accuracy=1.0", f"sft.eval_every={args.sft_steps}", "sft.val_size=8",
             "sft.batch_size=64", "sft.enabled=true")
    common = ["eval", str(run / "sft_model"), "quickstart", *TASK, f"data.eval.path={data['eval']}", f"data.eval.size={args.eval_size}",
              f"trainer.seed={seed}", "--k", ",".join(map(str, budgets(args.n))), "--n", str(args.n)]
    results = {}
    for name, model in reward_models.items():
        target = out / f"eval-seed-{seed}-{name}"
        rlhf(*common, "--search", "best_of_n,weighted_vote", "--reward-model", str(model), "--out", str(target))
        results[name] = json.loads((target / "eval.json").read_text())
    for beam in args.beams:
        width, k = (int(part) for part in beam.split("x"))
        target = out / f"eval-seed-{seed}-beam-{beam}"
        rlhf(*common[:-4], "--search", "step_beam", "--reward-model", str(reward_models["prm"]), "--beam-width", str(width),
             "--beam-k", str(k), "--out", str(target))
        results[f"beam {beam}"] = json.loads((target / "eval.json").read_text())
    return results


def budgets(n: int) -> list[int]:
    """k = 1, 2, 4, ..., n."""
    return [k for k in (2**i for i in range(n.bit_length())) if k <= n]


def curves(per_seed: list[dict], n: int) -> dict[str, list[tuple[float, float]]]:
    """(tokens per problem, accuracy) points of every method, each the mean over seeds."""
    def mean(values):
        return statistics.fmean(values)

    ks, lines = budgets(n), {}
    orm = [seed["orm"]["metrics"] for seed in per_seed]
    prm = [seed["prm"]["metrics"] for seed in per_seed]
    length = mean(m["eval/sampled_response_length"] for m in orm)
    lines["greedy"] = [(mean(m["eval/response_length"] for m in orm), mean(m["eval/accuracy"] for m in orm))]
    for name, metrics, key in (("pass@k (oracle)", orm, "pass"), ("maj@k", orm, "maj"), ("best-of-N ORM", orm, "best_of_n"),
                               ("weighted vote ORM", orm, "weighted_vote"), ("best-of-N PRM", prm, "best_of_n"),
                               ("weighted vote PRM", prm, "weighted_vote")):
        lines[name] = [(k * length, mean(m[f"eval/{key}@{k}"] for m in metrics)) for k in ks]
    beams = sorted((name for name in per_seed[0] if name.startswith("beam ")), key=lambda name: mean(s[name]["metrics"]["eval/step_beam_tokens"] for s in per_seed))
    lines["step beam PRM"] = [(mean(s[name]["metrics"]["eval/step_beam_tokens"] for s in per_seed),
                               mean(s[name]["metrics"]["eval/step_beam"] for s in per_seed)) for name in beams]
    return lines


def plot(lines: dict[str, list[tuple[float, float]]], path: Path, title: str) -> None:
    """Accuracy against tokens per problem, one line per method (log2 tokens axis)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    for (name, points), marker in zip(lines.items(), "*osD^v<>p"):
        axis.plot([x for x, _ in points], [y for _, y in points], marker=marker, label=name, linestyle="--" if "oracle" in name else "-")
    axis.set_xscale("log", base=2)
    axis.set(xlabel="generated tokens per problem", ylabel="held-out accuracy", title=title)
    axis.grid(alpha=0.3)
    axis.legend(loc="best", fontsize=8)
    figure.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="policy seeds (SFT init, sampling)")
    parser.add_argument("--sft-steps", type=int, default=300, help="SFT steps of each policy (brief: some answers stay wrong)")
    parser.add_argument("--eval-size", type=int, default=200, help="held-out problems")
    parser.add_argument("--n", type=int, default=16, help="samples per problem (k = 1, 2, 4, ..., n)")
    parser.add_argument("--beams", nargs="+", default=["1x2", "2x2", "2x4", "4x4"], help="step beam settings, WIDTHxK")
    parser.add_argument("--out", type=Path, default=Path("runs/measure-search"), help="working and output directory")
    args = parser.parse_args(argv)
    data = write_data(args.out, args.eval_size)
    reward_models = train_reward_models(args.out, data["orm"])
    per_seed = [evaluate_seed(args.out, seed, data, reward_models, args) for seed in args.seeds]
    lines = curves(per_seed, args.n)
    print(f"{'method':<20} " + "  ".join(f"{'tokens':>7} {'acc':>6}" for _ in range(max(map(len, lines.values())))))
    for name, points in lines.items():
        print(f"{name:<20} " + "  ".join(f"{x:>7.1f} {y:>6.3f}" for x, y in points))
    (args.out / "results.json").write_text(json.dumps({"settings": {**vars(args), "out": str(args.out)}, "lines": lines,
                                                       "per_seed": per_seed}, indent=2) + "\n")
    plot(lines, args.out / "search_scaling.png", f"search on step-format sums: {args.eval_size} problems, seeds {args.seeds}")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'search_scaling.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
