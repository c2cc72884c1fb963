"""`rlhf report RUN [--out FILE]` on a real tiny run, and its errors."""

import re

from rlhf.cli.main import main
from rlhf.report.plots import PLOTS, SFT_PLOTS

TINY = [
    "sft.enabled=false", "trainer.total_steps=2", "trainer.num_threads=1", "data.eval.size=8", "data.train_batch_size=3",
    "rollout.n=2", "actor.mini_batch_size=6", "actor.micro_batch_size=6", "algorithm.kl.coef=0.01", "trainer.sample_every=1",
]


def test_report_of_a_tiny_run_has_every_plot_and_the_samples(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "quickstart", f"trainer.output_dir={run}", *TINY]) == 0
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert f"wrote {run / 'report.html'}" in capsys.readouterr().out
    titles = re.findall(r"<img alt='([^']*)' src='data:image/png;base64,", page)
    assert titles == [spec.title for spec in PLOTS] + ["Phase times"]  # every metric the trainer logs is found
    assert page.count("<td class=text>") == 3 * 2 * 4  # 4 samples a step (prompt, response, ground truth cells)
    out = tmp_path / "elsewhere" / "page.html"
    assert main(["report", str(run), "--out", str(out)]) == 0 and out.read_text().startswith("<!DOCTYPE html>")


def test_report_of_an_sft_only_run(tmp_path, capsys):
    run = tmp_path / "sft-run"
    assert main(["sft", "quickstart", f"trainer.output_dir={run}", "trainer.num_threads=1", "sft.max_steps=3", "sft.eval_every=2",
                 "sft.val_size=2", "sft.batch_size=8"]) == 0
    assert not (run / "metrics.jsonl").exists()
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert re.findall(r"<img alt='([^']*)' src='data:image/png;base64,", page) == [spec.title for spec in SFT_PLOTS]
    assert "an SFT-only run (rlhf sft, no RL steps): 3 SFT steps" in page and "<td>sft/loss</td>" in page


def test_a_missing_run_directory_is_a_usage_error_naming_it(tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    assert main(["report", str(missing)]) == 2
    assert f"run directory '{missing}' does not exist" in capsys.readouterr().err


def test_a_directory_without_metrics_is_a_usage_error_naming_it(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("{}\n")
    assert main(["report", str(tmp_path)]) == 2
    assert f"'{tmp_path}' is not a run directory: it has no metrics.jsonl (written by `rlhf train`) and no sft_metrics.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()


def test_a_malformed_metrics_file_is_a_usage_error_naming_it(tmp_path, capsys):
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n{"step": 1, "reward/mean": \n')
    assert main(["report", str(tmp_path)]) == 2
    assert f"'{tmp_path / 'metrics.jsonl'}' is not valid JSON lines" in capsys.readouterr().err
