"""Reward models trained once per test session through `rlhf rm` on the shipped tiny recipes,
with a smaller budget than the recipes (measured held-out accuracy at these budgets on a
2-core CPU, seeds 0/1/2: orm_pairs 0.75/0.74/0.72 in ~12 s, orm_labels 0.73/0.70/0.77 in
~15 s, prm step accuracy 0.81/0.81/0.82 in ~19 s)."""

from pathlib import Path

import pytest

from rlhf.cli.main import main

TEST_BUDGET = {
    "orm_pairs": ["train.epochs=2", "train.lr=2.0e-3"],
    "orm_labels": ["train.epochs=5"],
    "prm": ["train.epochs=3"],
}
"""Overrides of each recipe for tests: fewer epochs (the recipes train longer)."""


@pytest.fixture(scope="session")
def trained_rm(tmp_path_factory):
    """kind -> output directory of `rlhf rm rm/<kind>_arithmetic` (trained on first use)."""
    runs: dict[str, Path] = {}

    def train(kind: str) -> Path:
        if kind not in runs:
            out = tmp_path_factory.mktemp(f"rm_{kind}")
            assert main(["rm", f"rm/{kind}_arithmetic", f"output_dir={out}", *TEST_BUDGET[kind]]) == 0
            runs[kind] = out
        return runs[kind]

    return train
