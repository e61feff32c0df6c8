"""The real download code (huggingface_hub) against a local server that speaks the hub's HTTP
protocol: the hub itself is a boundary this machine cannot reach. Covers the endpoints
huggingface_hub 1.x uses: model info, the file tree, and resolve (HEAD + GET)."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import huggingface_hub.constants
import pytest

from kit.errors import KitError
from kit.matrix.models import get_model
from kit.models import hub, tokenizer
from kit.models.prepare import prepare
from kit.models.synth import synthesize

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class _Hub(http.server.BaseHTTPRequestHandler):
    repos: ClassVar[dict[str, dict[str, bytes]]] = {}

    def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value: object) -> None:
        self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        for repo, files in self.repos.items():
            if path.startswith(f"/api/models/{repo}/tree/"):
                tree = [
                    {"type": "file", "path": n, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                    for n, d in files.items()
                ]
                return self._json(tree)
            if path.startswith(f"/api/models/{repo}"):
                return self._json(
                    {"id": repo, "sha": COMMIT, "siblings": [{"rfilename": n} for n in files]}
                )
            prefix = f"/{repo}/resolve/{COMMIT}/"
            if path.startswith(prefix) and path[len(prefix) :] in files:
                data = files[path[len(prefix) :]]
                etag = f'"{hashlib.sha256(data).hexdigest()}"'
                return self._send(200, data, {"X-Repo-Commit": COMMIT, "ETag": etag})
        if path == "/":
            return self._send(200, b"", {})
        return self._send(404, b"{}", {"X-Error-Code": "EntryNotFound"})

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[dict[str, dict[str, bytes]]]:
    _Hub.repos = {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: an earlier test may have imported
    # it (through transformers) under conftest's HF_HUB_OFFLINE=1.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv(tokenizer.GPT2_ENV, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("KIT_CACHE", str(tmp_path / "cache"))
    hub._probe.cache_clear()
    yield _Hub.repos
    server.shutdown()
    hub._probe.cache_clear()


def test_hub_weights_are_downloaded_pinned_and_reused(
    fake_hub: dict[str, dict[str, bytes]], tmp_path: Path
) -> None:
    source = synthesize(get_model("tiny-gpt2"), tmp_path / "upstream", seed=5)
    fake_hub["sshleifer/tiny-gpt2"] = {
        "config.json": source.config_file.read_bytes(),
        "model.safetensors": source.weights_file.read_bytes(),
        "README.md": b"not downloaded: only config, tokenizer and weights are",
    }
    got = prepare("tiny-gpt2", "hub")
    assert (got.weights, got.revision, got.approximate) == ("hub", COMMIT, False)
    assert got.sha256 == source.sha256
    assert set(got.files) == {"config.json", "model.safetensors"}
    record = json.loads((got.path / "prepared.json").read_text())
    assert record["revision"] == COMMIT and record["requested_revision"] is None
    again = prepare("tiny-gpt2")  # auto: the cached hub checkpoint wins
    assert again.reused and again.weights == "hub" and again.sha256 == source.sha256


def test_gpt2_tokenizer_comes_from_the_hub_once(
    fake_hub: dict[str, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The fake hub serves the packaged GPT-2 files; the packaged copy itself is hidden (it
    # would win before the hub), as in an install without the package data.
    fake_hub["openai-community/gpt2"] = {
        name: (tokenizer.PACKAGED_GPT2 / name).read_bytes() for name in tokenizer.GPT2_FILES
    }
    monkeypatch.setattr(tokenizer, "PACKAGED_GPT2", tmp_path / "no-package-data")
    first = tokenizer.tokenize("gpt2-25m", "Summarize RLHF in one sentence.")
    assert first.method == "exact" and first.source == f"hub:openai-community/gpt2@{COMMIT}"
    assert len(first.ids) == 9
    fake_hub.clear()  # from now on only the cache has it
    second = tokenizer.tokenize("gpt2-25m", "Hello")
    assert second.ids == [15496] and second.source.startswith("cache:")


def test_a_missing_file_is_named(fake_hub: dict[str, dict[str, bytes]], tmp_path: Path) -> None:
    fake_hub["openai-community/gpt2"] = {"config.json": b"{}"}
    with pytest.raises(KitError, match="file not found in hub repository openai-community/gpt2"):
        hub.download_files("openai-community/gpt2", ["vocab.json"], tmp_path)
