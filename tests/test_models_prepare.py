"""prepare(): idempotent checkpoints in the cache, hub errors, the CLI on top of it."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest

from kit.cli import main
from kit.errors import KitError
from kit.models import hub
from kit.models.cache import cache_root, model_dir, safe_name
from kit.models.prepare import NothingToPrepare, prepare

GPT2_25M_SHA256 = "11bd634f99673ce4172998f42eba95518e079dc2319f309b2aba56d6b1d60b27"


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("KIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Lift HF_HUB_OFFLINE (conftest) and forget earlier probe results."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # huggingface_hub reads HF_HUB_OFFLINE once, at import (maybe under conftest's "1").
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    hub._probe.cache_clear()
    yield
    hub._probe.cache_clear()


def test_cache_root_and_model_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "llm-repro-kit"
    monkeypatch.setenv("KIT_CACHE", str(tmp_path / "kc"))
    assert model_dir("gpt2-25m", "random") == tmp_path / "kc/models/gpt2-25m/random-seed42"
    assert model_dir("gpt2-25m", "hub").name == "hub"
    assert safe_name("llama3.1:8b-instruct-q4_0") == "llama3.1_8b-instruct-q4_0"
    with pytest.raises(KitError, match="unknown weights kind"):
        model_dir("gpt2-25m", "auto")


def test_random_is_idempotent_and_recorded(cache: Path) -> None:
    first = prepare("gpt2-25m", "random")
    assert (first.sha256, first.reused, first.approximate) == (GPT2_25M_SHA256, False, True)
    assert first.path == cache / "models/gpt2-25m/random-seed42"
    record = json.loads((first.path / "prepared.json").read_text())
    assert record["weights"] == "random" and record["seed"] == 42
    assert record["sha256"] == GPT2_25M_SHA256 == record["files"]["model.safetensors"]
    assert set(record["files"]) == {"model.safetensors", "config.json"}
    mtime = (first.path / "model.safetensors").stat().st_mtime_ns
    second = prepare("gpt2-25m", "random")
    assert second.reused and second.sha256 == first.sha256
    assert (second.path / "model.safetensors").stat().st_mtime_ns == mtime
    assert not [p for p in first.path.parent.iterdir() if p.name.startswith(".")]


def test_a_damaged_checkpoint_is_rebuilt(cache: Path) -> None:
    path = prepare("tiny-gpt2", "random").path / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    again = prepare("tiny-gpt2", "random")
    assert (
        not again.reused
        and again.sha256 == json.loads((again.path / "prepared.json").read_text())["sha256"]
    )
    assert prepare("tiny-gpt2", "random", seed=7).path.name == "random-seed7"


def test_auto_offline_synthesizes_and_says_why(cache: Path) -> None:
    result = prepare("tiny-gpt2")
    assert result.weights == "random" and "HF_HUB_OFFLINE" in result.reason


def test_hub_offline_is_a_clear_error(cache: Path) -> None:
    with pytest.raises(KitError, match="hub unreachable") as err:
        prepare("tiny-gpt2", "hub")
    assert "--weights random" in err.value.hint
    assert not (cache / "models/tiny-gpt2/hub").exists()


def test_ollama_tags_have_nothing_to_prepare(cache: Path) -> None:
    with pytest.raises(NothingToPrepare, match="Ollama tag: nothing to prepare"):
        prepare("gemma3:270m")
    with pytest.raises(KitError, match="unknown weights"):
        prepare("gpt2-25m", "cached")


def test_probe_fails_fast_on_a_closed_port(online: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    start = time.monotonic()
    assert not hub.hub_reachable(timeout_s=2.0)
    assert time.monotonic() - start < 5
    with pytest.raises(KitError, match="hub unreachable"):
        hub.download_snapshot("sshleifer/tiny-gpt2", None, Path("unused"))


class _NoSuchRepo(http.server.BaseHTTPRequestHandler):
    """Answers like the hub does for a missing repository."""

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.end_headers()

    def do_GET(self) -> None:
        body = b'{"error": "Repository not found"}'
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_hub_errors_from_huggingface_hub_become_kit_errors(
    online: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoSuchRepo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        assert hub.hub_reachable()
        with pytest.raises(KitError, match="not found"):
            hub.download_snapshot("nobody/nothing", None, tmp_path)
    finally:
        server.shutdown()


def test_cli_prepare_twice_prints_the_same_sha256(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "prepare", "gpt2-25m", "--weights", "random"]) == 0
    first = capsys.readouterr().out
    assert main(["models", "prepare", "gpt2-25m", "--weights", "random"]) == 0
    second = capsys.readouterr().out
    assert GPT2_25M_SHA256 in first and GPT2_25M_SHA256 in second
    assert "created" in first and "reused" in second


def test_cli_prepare_json_globs_and_ollama(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["models", "prepare", "tiny-*", "llama3.2:1b", "--weights", "random", "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    models = {m["model_id"]: m for m in result["models"]}
    assert set(models) == {"tiny-gpt2", "llama3.2:1b"}
    assert models["tiny-gpt2"]["weights"] == "random" and models["tiny-gpt2"]["approximate"]
    assert "nothing to prepare" in models["llama3.2:1b"]["state"]


def test_cli_errors_are_one_message(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "prepare", "tiny-gpt2", "--weights", "hub"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: hub unreachable") and "Traceback" not in err
    assert main(["models", "prepare", "gpt2-*x"]) == 1
    assert "unknown model" in capsys.readouterr().err
    assert main(["models", "prepare"]) == 1
    assert "nothing to prepare" in capsys.readouterr().err


def test_cli_tokenizer_registration(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import exact_gpt2_dir

    folder = exact_gpt2_dir()
    assert main(["models", "prepare", "--tokenizer", str(folder)]) == 0
    assert "tokenizer gpt2: registered" in capsys.readouterr().out
    assert (cache / "tokenizers/gpt2/merges.txt").is_file()


def test_cli_list(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prepare("tiny-gpt2", "random")
    assert main(["models", "list", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert len(rows) == 17
    assert rows["tiny-gpt2"]["prepared"] == ["random"] and rows["gpt2-25m"]["prepared"] == []
    assert rows["qwen2.5-3b"]["n_layer"] == 36 and rows["gpt2-5m"]["params"] == 5036720
    assert main(["models", "list"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:4] == ["id", "family", "params", "n_layer"]
    assert "3.09B" in table and "ollama:gemma3:latest" in table
