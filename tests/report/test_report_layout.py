"""The report page never scrolls sideways: long prompts, responses, ground truths, data source
names and config lines wrap or scroll inside their own box. Checked in a headless browser when
one is installed (the page is measured at 1400 px and at a phone's width), and always by the
markup that makes it so."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rlhf.report.page import render
from rlhf.report.run_data import load_run
from test_report_page import full_records, write_run

BROWSER = next((shutil.which(name) for name in ("chromium-headless-shell", "chromium", "google-chrome") if shutil.which(name)), None)
PROBE = ("<script>document.body.insertAdjacentHTML('beforeend', '<div id=measure>' + "
         "document.documentElement.scrollWidth + ' ' + document.documentElement.clientWidth + '</div>')</script>")
"""Appended to a copy of the page (the report itself has no scripts): page width, window width."""


def wide_run(directory: Path) -> Path:
    """A run whose texts are long enough to push any fixed-width layout off the screen."""
    long_prompt = "Natalia sold clips to 48 of her friends in April, and half as many in May. " * 8
    samples = [{"step": 10, "prompt": long_prompt, "response": "Let me think step by step. " * 40 + "x" * 400, "reward": 1.0,
                "rewards": {"gsm8k_verifier": 1.0, "skywork_outcome_reward_model": 0.25}, "ground_truth": "72 " * 60,
                "data_source": "openai/gsm8k_main_with_a_very_long_source_name"}] * 3
    run = write_run(directory, full_records(30), samples)
    (run / "config.yaml").write_text("description: wide\nmodel:\n  path: /models/" + "a" * 400 + "\n")
    return run


def test_the_markup_keeps_every_part_within_the_window(tmp_path):
    page = render(load_run(wide_run(tmp_path / "run")))
    style = page.split("<style>", 1)[1].split("</style>", 1)[0]
    assert "box-sizing: border-box" in style  # the body's padding counts in its max-width
    assert "minmax(min(560px, 100%), 1fr)" in style  # a plot column never exceeds the window
    assert re.search(r"table\.samples \{[^}]*table-layout: fixed", style)  # long text wraps inside its cell
    assert page.count("<table") == page.count("<div class='wide'><table")  # any table too wide scrolls inside itself


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed")
@pytest.mark.parametrize("width", [1400, 600])
def test_the_page_does_not_scroll_sideways_in_a_browser(tmp_path, width):
    page = render(load_run(wide_run(tmp_path / "run")))
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={width},900", "--dump-dom", probe.as_uri()],
                          capture_output=True, text=True, timeout=120)
    measured = re.search(r'<div id="measure">(\d+) (\d+)</div>', done.stdout)
    assert measured, done.stderr[-2000:]
    page_width, window_width = map(int, measured.groups())
    assert page_width <= window_width
