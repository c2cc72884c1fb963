"""The report page from hand-written run files: embedded PNG plots, escaped
samples, numbers and config; metrics a run never logged are skipped with a note."""

import base64
import json
import re
from pathlib import Path

import pytest

from rlhf.report.page import render, write_report
from rlhf.report.plots import PLOTS, merge_equal, metric_plot, phase_plot
from rlhf.report.run_data import load_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOSTILE = "<script>alert('x')</script> & <b>"


def write_run(directory: Path, records: list[dict], samples: list[dict] | None = None) -> Path:
    directory.mkdir(parents=True)
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if samples is not None:
        (directory / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return directory


def full_records(steps: int = 30) -> list[dict]:
    records = [{"step": 0, "eval/accuracy": 0.1, "eval/pass@4": 0.3, "time/eval_s": 1.0}]
    for step in range(1, steps + 1):
        records.append({
            "step": step, "reward/mean": step / steps, "reward/exact/mean": step / steps, "reward/length/mean": -0.1,
            "kl/sequence_mean": 0.01 * step, "actor/entropy": 1.0 - step / (2 * steps), "response_length/mean": 10 + step,
            "response_length/max": 20 + step, "perf/throughput": 1000.0, "perf/tokens_per_s": 4000.0, "time/step_s": 2.0,
            "time/generate_s": 1.2, "time/update_s": 0.6, "time/generate_share": 0.6, "time/update_share": 0.3,
            "actor/grad_norm": None,  # a NaN in metrics.jsonl
            **({"eval/accuracy": 0.1 + step / 100, "eval/pass@4": 0.5, "time/eval_s": 1.0} if step % 10 == 0 else {}),
        })
    return records


def images(page: str) -> dict[str, bytes]:
    """alt text -> PNG bytes of every embedded image."""
    return {alt: base64.b64decode(data) for alt, data in re.findall(r"<img alt='([^']*)' src='data:image/png;base64,([^']*)'>", page)}


def test_page_embeds_every_plot_and_escapes_samples_and_config(tmp_path):
    samples = [{"step": 10, "prompt": HOSTILE, "response": "a < b && c", "reward": 1.0, "rewards": {"exact": 1.0, "length": -0.1}, "ground_truth": "</td>", "data_source": "gsm8k"}]
    run = write_run(tmp_path / "run", full_records(), samples)
    (run / "config.yaml").write_text(f"description: {json.dumps(HOSTILE)}\nalgorithm:\n  advantage: grpo\nrollout:\n  n: 8\n")
    (run / "summary.json").write_text(json.dumps({"accuracy_before": 0.1, "accuracy_after": 0.4, "steps": 30, "seconds": 61.0}))
    path = write_report(run)
    page = path.read_text()
    assert path == run / "report.html"
    drawn = images(page)
    assert set(drawn) == {spec.title for spec in PLOTS} | {"Phase times"}
    assert all(png.startswith(PNG_MAGIC) and len(png) > 5000 for png in drawn.values())
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;" in page
    assert "a &lt; b &amp;&amp; c" in page and "&lt;/td&gt;" in page and "gsm8k" in page
    assert "held-out accuracy 0.1 → 0.4; 30 RL steps in 61 s" in page
    assert re.search(r"<td>reward/mean</td><td class=num>0.03333</td><td class=num>1</td>", page)
    assert "<td>eval/pass@4</td>" in page and "<td>algorithm.advantage</td><td>grpo</td>" in page
    assert "not plotted" not in page


def test_missing_metrics_and_files_are_notes_not_errors(tmp_path):
    run = write_run(tmp_path / "run", [{"step": 0}, {"step": 1, "reward/mean": 0.5}, {"step": 2, "reward/mean": None}])
    page = render(load_run(run))
    assert set(images(page)) == {"Reward"}
    assert page.count("not plotted") == len(PLOTS)  # every other metric plot and the phase times
    assert "<figcaption>" not in page  # a plot not drawn is one line of note, not an empty figure
    assert "no samples.jsonl" in page and "no config.yaml" in page and "no summary.json" in page
    assert "SFT" not in page


def test_the_kl_plot_of_a_run_without_kl_is_left_out_with_the_reason(tmp_path):
    # no KL penalty: no kl/sequence_mean, and one update per batch: approx_kl zero throughout
    records = [{**{k: v for k, v in record.items() if k != "kl/sequence_mean"}, "actor/approx_kl": 0.0} for record in full_records(5)]
    page = render(load_run(write_run(tmp_path / "off", records)))
    assert "KL divergence" not in images(page) and len(images(page)) == len(PLOTS)
    assert "KL divergence: not plotted: no KL penalty (algorithm.kl.coef 0), and actor/approx_kl is zero throughout" in page
    # a KL penalty that stayed zero (the policy never moved) is still a KL worth drawing
    zero_kl = [{"step": step, "kl/sequence_mean": 0.0, "actor/approx_kl": 0.0} for step in (1, 2)]
    assert metric_plot(PLOTS[2], zero_kl).png is not None
    assert metric_plot(PLOTS[0], [{"step": 1, "reward/mean": 0.0}]).png is not None  # so is a zero reward


def sft_records(steps: int = 6) -> list[dict]:
    """What `rlhf sft` writes: a loss record per step and a validation record every 3 steps."""
    records = []
    for step in range(steps + 1):
        if step % 3 == 0:
            records.append({"sft/step": step, "sft/val_accuracy": step / 10})
        if step < steps:
            records.append({"sft/step": step + 1, "sft/loss": 4.0 - step / 2, "sft/grad_norm": 5.0 - step / 3})
    return records


def test_an_sft_only_run_gets_its_curves_and_config(tmp_path):
    run = tmp_path / "sft-run"
    run.mkdir()
    (run / "sft_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft_records()))
    (run / "config.yaml").write_text("description: sft only\nsft:\n  enabled: true\n")
    page = render(load_run(run))
    assert set(images(page)) == {"SFT loss", "SFT validation accuracy", "SFT gradient norm"}
    assert "an SFT-only run (rlhf sft, no RL steps): 6 SFT steps; validation accuracy 0 → 0.6" in page
    assert re.search(r"<td>sft/loss</td><td class=num>4</td><td class=num>1.5</td>", page)
    assert "no samples.jsonl: an SFT-only run generates no samples" in page and "sft only" in page
    assert "not plotted" not in page and "no summary.json" not in page


def test_a_run_with_a_warm_start_shows_both_stages(tmp_path):
    run = write_run(tmp_path / "run", full_records(5))
    (run / "sft_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft_records()))
    assert set(images(render(load_run(run)))) == {spec.title for spec in PLOTS} | {"Phase times", "SFT loss", "SFT validation accuracy", "SFT gradient norm"}


def test_equal_series_are_drawn_once_with_both_names():
    merged = merge_equal({"reward/mean": ([1, 2], [0.5, 1.0]), "reward/exact/mean": ([1, 2], [0.5, 1.0]), "eval/reward": ([], [])})
    assert merged == {"reward/mean = reward/exact/mean": ([1, 2], [0.5, 1.0])}


def test_plots_pick_their_metrics_by_pattern():
    records = full_records(steps=5)
    assert metric_plot(PLOTS[1], records).png is not None  # eval/accuracy and eval/pass@4
    assert metric_plot(PLOTS[1], [{"step": 1, "eval/gsm8k/accuracy": 0.5}]).png is None  # per-source keys are not headline plots
    assert phase_plot([{"step": 0, "time/eval_s": 1.0}]).note.startswith("not plotted")


@pytest.mark.parametrize("steps", [3, 200])
def test_short_and_long_runs_plot(tmp_path, steps):
    page = render(load_run(write_run(tmp_path / "run", full_records(steps))))
    assert len(images(page)) == len(PLOTS) + 1
