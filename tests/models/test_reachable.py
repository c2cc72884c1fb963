"""Whether a model can be loaded here, asked before a run loads it: a local directory, the
Hugging Face cache, or the hub when online. `rlhf validate` exits 2 naming the key of a model
that cannot be loaded, instead of accepting what `rlhf train` then refuses."""

import http.server
import threading
import time
from pathlib import Path

import huggingface_hub.constants
import pytest

from rlhf.cli.main import RECIPES_DIR, main
from rlhf.config.loader import load_recipe
from rlhf.controller.preflight import recipe_models, unreachable_models
from rlhf.models.reachable import model_reachable
from rlhf.models.tiny import build_tiny_model
from tiny_helpers import cache_hub_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache that huggingface_hub uses for this test."""
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_a_local_model_directory_is_reachable_and_a_missing_one_is_not(tiny_dir, tmp_path):
    assert model_reachable(str(tiny_dir)) == (True, f"local directory {tiny_dir}")
    ok, detail = model_reachable(str(tmp_path / "missing"))
    assert not ok and detail == f"{str(tmp_path / 'missing')!r} does not exist (a local path; a hub model is named like 'org/name')"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert model_reachable(str(empty)) == (False, f"local directory {str(empty)!r} has no config.json: it is not a Hugging Face model directory")
    assert model_reachable("not a/valid/name")[0] is False


def test_a_made_up_hub_name_offline_is_unreachable_at_once(hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    ok, detail = model_reachable("nobody-here/no-such-model-1234")
    assert time.monotonic() - start < 1.0
    assert not ok and "is not in the Hugging Face cache and HF_HUB_OFFLINE is set" in detail
    assert "`hf download nobody-here/no-such-model-1234`" in detail


def test_a_cached_hub_model_is_reachable_offline_and_a_config_alone_is_not(hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache_hub_model(hf_cache, "org/cached")
    assert model_reachable("org/cached") == (True, "hub model org/cached, in the Hugging Face cache")
    cache_hub_model(hf_cache, "org/config-only", files=("config.json",))  # what `rlhf plan` leaves after reading a shape
    ok, detail = model_reachable("org/config-only")
    assert not ok and "(the cache holds only config.json)" in detail


class _Hub(http.server.BaseHTTPRequestHandler):
    """Answers HEAD requests like the hub: `org/present` exists, every other repository does not."""

    def do_HEAD(self):  # noqa: N802 - the http.server API
        if self.path.startswith("/org/present/resolve/main/config.json"):
            self.send_response(200)
            self.send_header("ETag", '"abc"')
            self.send_header("X-Repo-Commit", "0" * 40)
            self.send_header("Content-Length", "2")
        else:
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("X-Error-Message", "Repository not found")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_online_the_hub_is_asked_once_with_a_timeout(hf_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert model_reachable("org/present", endpoint=endpoint) == (True, "hub model org/present, not cached yet: it will be downloaded")
        ok, detail = model_reachable("org/absent", endpoint=endpoint)
        assert not ok and detail.startswith("hub model 'org/absent' does not exist")
    finally:
        server.shutdown()
        server.server_close()
    start = time.monotonic()
    ok, detail = model_reachable("org/present", endpoint=endpoint, timeout_s=1.0)  # the server is gone
    assert not ok and detail.startswith("the hub could not be asked about 'org/present' (") and "limit 1 s)" in detail and time.monotonic() - start < 5


def test_the_recipe_keys_of_every_model_are_checked(tiny_dir, tmp_path, hf_cache):
    config = load_recipe(RECIPES_DIR / "gsm8k_grpo_orm.yaml", [f"ref.path={tmp_path / 'ref'}", "algorithm.kl.coef=0.01"])
    keys = [key for key, _ in recipe_models(config)]
    assert keys == ["model.path", "ref.path", "reward.sources.1.kwargs.path"]
    problems = unreachable_models(config)
    assert [problem.split(":")[0] for problem in problems] == keys
    assert unreachable_models(load_recipe(None, [f"model.path={tiny_dir}"])) == []


def test_validate_exits_2_naming_the_key_of_an_unreachable_model(tiny_dir, tmp_path, hf_cache, capsys):
    assert main(["validate", "gsm8k_grpo_qwen2.5-0.5b", f"model.path={tmp_path / 'nope'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: model.path: '{tmp_path / 'nope'}' does not exist") and "Traceback" not in err
    assert main(["validate", "gsm8k_grpo_qwen2.5-0.5b"]) == 2
    assert "model.path: hub model 'Qwen/Qwen2.5-0.5B-Instruct' is not in the Hugging Face cache" in capsys.readouterr().err
    assert main(["validate", "gsm8k_grpo_qwen2.5-0.5b", f"model.path={tiny_dir}"]) == 0
    assert main(["validate", "quickstart", f"model.path={tmp_path / 'mine'}"]) == 2
    assert "model.path: '" in capsys.readouterr().err and not (tmp_path / "mine").exists()
    assert main(["validate", "rm/orm_pairs_arithmetic", "model.source=pretrained", f"model.path={tmp_path / 'nope'}"]) == 2
