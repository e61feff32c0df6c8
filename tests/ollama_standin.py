"""A stand-in Ollama server on 127.0.0.1 for the tests (no Ollama can be installed here).

It answers the endpoints the kit uses with the reply shapes of Ollama's API documentation
(docs.ollama.com/api: generate's `model, created_at, response, done, done_reason,
total_duration, load_duration, prompt_eval_count, prompt_eval_duration, eval_count,
eval_duration`; newer servers add `prompt_eval_cached_count`), omits zero-valued fields as the
Go server's `omitempty` does, and answers errors as `{"error": "..."}` with the HTTP status the
real server uses, so the official client raises its real `ResponseError`. Its version string
carries `kit-stand-in`, and results produced through it say so.

Behaviour:
- prompt tokens are counted with the GPT-2 tokenizer (the kit's), and a real prefix cache of
  the previous prompt is modelled: the common prefix is "cached" (prompt_eval_count counts
  only the rest, prompt_eval_cached_count the cached part);
- plants: `eos_after` (stop with done_reason "stop" after that many tokens) and
  `cache_hit_on` (the n-th generate request, 1-based, reports 5 prompt tokens as cached).
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERSION = "0.21.1-kit-stand-in"


class StandIn:
    def __init__(self, tokenizer: Any, *, tags: tuple[str, ...] = ()) -> None:
        self.tokenizer = tokenizer
        self.blobs: dict[str, int] = {}
        self.models: dict[str, dict[str, Any]] = {t: {"from": "library"} for t in tags}
        self.requests: list[dict[str, Any]] = []
        self.generate_count = 0
        self.last_prompt: list[int] = []
        self.loaded: set[str] = set()
        self.eos_after: int | None = None
        self.cache_hit_on: int | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the API --------------------------------------------------------------------------
    def generate(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = body.get("model", "")
        if name not in self.models:
            return 404, {"error": f"model '{name}' not found"}
        self.generate_count += 1
        ids = self.tokenizer.encode(body.get("prompt", ""), add_special_tokens=False).ids
        common = 0
        for a, b in zip(ids, self.last_prompt, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(ids) - 1)  # the last prompt token is always evaluated
        if self.cache_hit_on == self.generate_count:
            common = max(common, min(5, len(ids) - 1))
        self.last_prompt = ids
        options = body.get("options") or {}
        n_predict = int(options.get("num_predict", 128))
        produced = n_predict if self.eos_after is None else min(n_predict, self.eos_after)
        load = 0 if name in self.loaded else 250_000_000
        self.loaded.add(name)
        prompt_ns = 40_000 * (len(ids) - common) + 500_000
        eval_ns = 3_000_000 * produced
        reply = {
            "model": name,
            "created_at": "2025-10-17T23:14:07.414671Z",
            "response": " the" * produced,
            "done": True,
            "done_reason": "length" if produced == n_predict else "stop",
            "total_duration": load + prompt_ns + eval_ns + 100_000,
            "load_duration": load,
            "prompt_eval_count": len(ids) - common,
            "prompt_eval_cached_count": common,
            "prompt_eval_duration": prompt_ns,
            "eval_count": produced,
            "eval_duration": eval_ns,
        }
        return 200, {k: v for k, v in reply.items() if v not in (0, None)}  # omitempty

    def create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        files = body.get("files") or {}
        for digest in files.values():
            if digest not in self.blobs:
                return 400, {"error": f"blob {digest} not found"}
        self.models[body["model"]] = {"files": files, "template": body.get("template")}
        return 200, {"status": "success"}

    def show(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = body.get("model", "")
        if name not in self.models:
            return 404, {"error": f"model '{name}' not found"}
        info = self.models[name]
        return 200, {
            "modelfile": f"FROM {name}",
            "template": info.get("template") or "{{ .Prompt }}",
            "details": {"format": "gguf", "family": "gpt2", "parameter_size": "25M"},
            "model_info": {"general.architecture": "gpt2", "gpt2.context_length": 1024},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: dict[str, Any] | None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:
                standin.requests.append({"method": "GET", "path": self.path})
                if self.path == "/api/version":
                    return self._send(200, {"version": VERSION})
                if self.path == "/api/tags":
                    models = [{"name": n, "model": n} for n in standin.models]
                    return self._send(200, {"models": models})
                return self._send(404, {"error": "not found"})

            def do_HEAD(self) -> None:
                digest = self.path.rsplit("/", 1)[-1]
                self._send(200 if digest in standin.blobs else 404, None)

            def do_POST(self) -> None:
                raw = self._body()
                if self.path.startswith("/api/blobs/"):
                    digest = self.path.rsplit("/", 1)[-1]
                    actual = "sha256:" + hashlib.sha256(raw).hexdigest()
                    standin.requests.append(
                        {"method": "POST", "path": self.path, "bytes": len(raw)}
                    )
                    if actual != digest:
                        return self._send(400, {"error": "digest mismatch"})
                    standin.blobs[digest] = len(raw)
                    return self._send(201, None)
                body = json.loads(raw or b"{}")
                standin.requests.append({"method": "POST", "path": self.path, "body": body})
                if self.path == "/api/generate":
                    return self._send(*standin.generate(body))
                if self.path == "/api/create":
                    return self._send(*standin.create(body))
                if self.path == "/api/show":
                    return self._send(*standin.show(body))
                if self.path == "/api/pull":
                    return self._send(500, {"error": "pull model manifest: file does not exist"})
                return self._send(404, {"error": "not found"})

        return Handler
