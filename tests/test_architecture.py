"""The layout rules of ARCHITECTURE.md that code review alone would let slip: engines are
named only in their registries, the library holds no benchmark harness and imports no TRL,
roles declare how each method is dispatched, and the modules import each other without cycles."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf.dispatch import dispatch_table
from rlhf.rollout.hf import HFRolloutEngine
from rlhf.rollout.vllm_engine import VLLMRolloutEngine
from rlhf.workers.actor import ActorWorker
from rlhf.workers.colocated import Colocated
from rlhf.workers.critic import CriticWorker
from rlhf.workers.ref import AdapterDisabledRef, RefWorker
from rlhf.workers.reward_model import RewardModels

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rlhf", "reward_models")
REGISTRIES = {"rlhf/engines/registry.py", "rlhf/rollout/registry.py"}


def library_files():
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_engine_names_are_compared_only_in_the_registries():
    """`train.engine == "deepspeed"` anywhere else would be a second place to edit when an
    engine is added; everything else asks the registry entry."""
    pattern = re.compile(r"""(engine\s*[!=]=\s*["'](torch|deepspeed|hf|vllm)["'])|(["'](torch|deepspeed|hf|vllm)["']\s*[!=]=\s*\w*engine)""")
    offenders = [f"{path.relative_to(ROOT)}:{number}" for path in library_files() if str(path.relative_to(ROOT)) not in REGISTRIES
                 for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_the_library_ships_no_harness_and_imports_trl_only_to_train_reward_models():
    assert not (ROOT / "rlhf" / "bench").exists() and not (ROOT / "rlhf" / "reliability").exists()
    importers = []
    for path in library_files():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name == "trl" or name.startswith("trl.") for name in names):
                importers.append(str(path.relative_to(ROOT)))
    assert importers == ["reward_models/train.py"]


@pytest.mark.parametrize("role, methods", [
    (ActorWorker, {"compute_logprobs", "update_policy"}),
    (CriticWorker, {"compute_values", "update_critic"}),
    (RefWorker, {"compute_logprobs"}),
    (AdapterDisabledRef, {"compute_logprobs"}),
    (HFRolloutEngine, {"generate", "generate_steps", "sleep", "wake"}),
    (VLLMRolloutEngine, {"generate", "generate_steps", "sleep", "wake"}),
    (RewardModels, {"sequence_scores", "position_probs"}),
    (Colocated, {"sync_weights", "follow_policy", "actor_weights", "save_state", "load_state", "close"}),
])
def test_every_role_method_the_controller_calls_declares_its_dispatch(role, methods):
    assert set(dispatch_table(role)) == methods


def test_the_two_rollout_engines_dispatch_alike():
    assert dispatch_table(HFRolloutEngine) == dispatch_table(VLLMRolloutEngine)


def test_no_import_cycles():
    tool = ROOT.parent / "shared" / "tools" / "layout_check.py"
    if not tool.exists():
        pytest.skip("the shared layout checker is not beside this checkout")
    done = subprocess.run([sys.executable, str(tool), str(ROOT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout
