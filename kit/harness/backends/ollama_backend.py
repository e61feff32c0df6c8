"""Ollama over its HTTP API, with the official `ollama` client.

The server is the pinned `ollama/ollama` sidecar the Docker runner starts, or the one
$OLLAMA_HOST names (default http://127.0.0.1:11434). When none answers, every cell is
`skipped` saying so. Models:
- a kit model (gpt2-*, qwen2.5-*): the kit's own GGUF of the same checkpoint the other
  backends run, imported through /api/blobs + /api/create (template `{{ .Prompt }}`) under
  `llm-repro-kit/<model>:<dtype>-<key>`; the same weights on every backend;
- a published tag (TR117/TR126's Ollama models): used when the server has it, else pulled by
  name (which needs a registry the server can reach).

Every request: raw, stream false, temperature 0 (or the cell's sampling), a seed per
repetition, num_predict, num_ctx <= the model's context, a prompt the server has not seen
(kit.harness.backends.ollama_prompts). Phases, from the server's own duration fields
(nanoseconds; a field the server omits is 0):
  prefill   = prompt_eval_duration of a 1-token request
  kv_decode = eval_duration of a (max_new_tokens + 1)-token request, per decode token
              eval_duration / (eval_count - 1), times max_new_tokens
  e2e_kv, generate = HTTP wall clock of a max_new_tokens request; load_duration kept apart
Ollama cannot ignore EOS: a reply with done_reason != "length" or eval_count < num_predict is
an `eos_truncated` sample (the cell degraded). A prompt_eval_count below the expected count,
or prompt_eval_cached_count > 0, is a `prompt_cache_hit` sample.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from kit.harness.backends.base import Call, Verdict
from kit.harness.backends.ollama_prompts import FreshPrompt, FreshPrompts
from kit.harness.backends.vllm_backend import PhaseTimer

DEFAULT_HOST = "http://127.0.0.1:11434"
STAND_IN_MARK = "kit-stand-in"  # the version string of the kit's test stand-in server
TEMPLATE = "{{ .Prompt }}"
FIELDS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_cached_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


def reply_fields(reply: Any) -> dict[str, Any]:
    """The server's counters and durations of a reply, a missing (omitted zero) field as 0."""
    get = reply.get if isinstance(reply, dict) else lambda k, d=None: getattr(reply, k, d)
    out: dict[str, Any] = {k: int(get(k, 0) or 0) for k in FIELDS}
    out["done_reason"] = get("done_reason", None)
    return out


class OllamaBackend:
    compiles = False

    def __init__(self, spec: dict[str, Any]) -> None:
        try:
            import ollama
        except ImportError as err:
            ollama = None  # type: ignore[assignment]
            self.missing: str | None = (
                f"the ollama client is not importable ({err}): pip install ollama"
            )
        else:
            self.missing = None
        self.ollama: Any = ollama
        self.spec = spec
        first = spec["cells"][0]
        self.model_id = first["model"]
        self.dtype_name = first["dtype"]
        self.host = os.environ.get("OLLAMA_HOST") or DEFAULT_HOST
        self.timer = PhaseTimer()
        self.phases: list[dict[str, Any]] = []
        self.client: Any = None
        self.server: dict[str, Any] = {"host": self.host}
        self.model_name = ""
        self.model_source = ""
        self.model_skip: str | None = None
        self.n_ctx_train: int | None = None
        self.prompts: FreshPrompts | None = None
        self.replies: dict[str, list[dict[str, Any]]] = {}

    # -- group level ------------------------------------------------------------------------
    def unavailable(self) -> str | None:
        if self.missing:
            return self.missing
        self.client = self.ollama.Client(host=self.host, timeout=600)
        try:
            # /api/version has no method in the client; its httpx client is the same session.
            answer = self.client._client.get("/api/version", timeout=10)
            answer.raise_for_status()
            version = str(answer.json().get("version", ""))
        except Exception as err:
            return (
                f"no Ollama server answers at {self.host} ({type(err).__name__}: {err}): "
                "--runner docker starts the pinned ollama sidecar, or set OLLAMA_HOST"
            )
        self.server.update(version=version, stand_in=STAND_IN_MARK in version)
        if self.server["stand_in"]:
            self.server["note"] = (
                "replies came from the kit's test stand-in server, not a real Ollama: "
                "request/response handling verified, Ollama's own timings unverified"
            )
        return None

    def _phase(self, name: str, t0: int, t1: int, detail: dict[str, Any]) -> None:
        self.phases.append(
            {"phase": name, "cell": None, "t0_ns": t0, "t1_ns": t1, "ms": (t1 - t0) / 1e6}
            | {"detail": detail}
        )

    def _has(self, name: str) -> bool:
        try:
            self.client.show(name)
            return True
        except self.ollama.ResponseError as err:
            if err.status_code == 404:
                return False
            raise

    def load(self) -> dict[str, Any]:
        from kit.matrix.models import get_model

        spec = get_model(self.model_id)
        if spec.is_ollama:
            self.model_name = str(spec.ollama_tag)
            self.model_source = "published tag"
            self.prompts = FreshPrompts(None, int(self.spec["cells"][0]["seed"]))
            if not self._has(self.model_name):
                t0 = time.monotonic_ns()
                try:
                    self.client.pull(self.model_name, stream=False)
                except self.ollama.ResponseError as err:
                    self.model_skip = (
                        f"tag {self.model_name} is not on the server and could not be pulled "
                        f"({err}); pull it where a registry is reachable, or use "
                        "--ollama-models local (the kit's GGUF of the same models)"
                    )
                self._phase("pull", t0, time.monotonic_ns(), {"model": self.model_name})
        else:
            self._import_gguf(spec)
        return {"server": self.server, "model": self.model_name, "source": self.model_source}

    def _import_gguf(self, spec: Any) -> None:
        from kit.harness.backends.gguf_export import cached_gguf, gguf_dtype
        from kit.models.tokenizer import find_tokenizer

        t0 = time.monotonic_ns()
        export = cached_gguf(Path(self.spec["model_dir"]), self.dtype_name)
        self._phase("export", t0, time.monotonic_ns(), export.to_dict())
        tag = f"{gguf_dtype(self.dtype_name)}-{export.key[:12]}"
        self.model_name = f"llm-repro-kit/{self.model_id}:{tag}".lower()
        self.model_source = f"kit GGUF {export.key} (sha256 {export.sha256})"
        config = spec.config
        self.n_ctx_train = int(config.get("n_positions") or config.get("max_position_embeddings"))
        tokenizer, _source = find_tokenizer(spec.tokenizer)
        self.prompts = FreshPrompts(tokenizer, int(self.spec["cells"][0]["seed"]))
        if self._has(self.model_name):
            return
        t0 = time.monotonic_ns()
        digest = self.client.create_blob(export.path)
        t1 = time.monotonic_ns()
        self._phase("blob_upload", t0, t1, {"digest": digest, "bytes": export.path.stat().st_size})
        self.client.create(
            model=self.model_name, files={"model.gguf": digest}, template=TEMPLATE, stream=False
        )
        self._phase("create", t1, time.monotonic_ns(), {"model": self.model_name})

    def is_fatal(self, error: BaseException) -> bool:
        return isinstance(error, ConnectionError)

    # -- cell level -------------------------------------------------------------------------
    def skip_reason(self, cell: dict[str, Any]) -> str | None:
        if self.model_skip:
            return self.model_skip
        if cell.get("quantization") == "int8":
            return "int8 (a TR117 label) is not exported by the kit's GGUF writer (f32, f16)"
        if int(cell.get("batch_size", 1)) > 1 or int(cell.get("concurrency", 1)) > 1:
            return "the ollama backend sends one prompt per request: batch and concurrent cells are not implemented"
        if cell.get("cache") == "static" or cell.get("pad_to_multiple"):
            return "Ollama manages its own KV cache and never pads prompts: cache static / padded prompts do not apply"
        return None

    def compile_counters(self) -> dict[str, Any]:
        return {}

    def _options(
        self, cell: dict[str, Any], n_predict: int, n_prompt: int, rep: int
    ) -> dict[str, Any]:
        sampling = cell.get("sampling") or {}
        options: dict[str, Any] = {"num_predict": n_predict, "seed": int(cell["seed"]) + rep}
        if sampling.get("do_sample"):
            options.update(
                temperature=float(sampling.get("temperature", 1.0)),
                top_p=float(sampling.get("top_p", 1.0)),
            )
        else:
            options["temperature"] = 0.0
        wanted = -(-(n_prompt + n_predict + 8) // 64) * 64
        options["num_ctx"] = min(wanted, self.n_ctx_train) if self.n_ctx_train else wanted
        return options

    def call(self, cell: dict[str, Any], prompt_ids: list[list[int]], rep: int) -> Call:
        assert self.prompts is not None
        ids = list(prompt_ids[0])
        texts = self.spec.get("texts", {}).get(cell["id"]) or []
        n_new = int(cell["max_new_tokens"])
        mode = cell["mode"]
        n_predict = {"prefill": 1, "kv_decode": n_new + 1}.get(mode, n_new)
        cid = cell["id"]

        def setup() -> tuple[FreshPrompt, dict[str, Any]]:
            text = texts[0] if texts else ""
            if self.prompts is not None and self.prompts.tokenizer is not None and not text:
                text = self.prompts.tokenizer.decode(ids, skip_special_tokens=False)
            prompt = (
                self.prompts.next(ids, text) if self.prompts else FreshPrompt(text, None, None, "")
            )
            options = self._options(cell, n_predict, prompt.expected_tokens or len(ids), rep)
            return prompt, options

        def run(state: Any) -> tuple[dict[str, Any], float | None]:
            prompt, options = state
            t0 = time.perf_counter_ns()
            reply = self.client.generate(
                model=self.model_name,
                prompt=prompt.text,
                raw=True,
                stream=False,
                options=options,
                keep_alive="30m",
            )
            wall_ms = (time.perf_counter_ns() - t0) / 1e6
            fields = reply_fields(reply)
            record = {"rep": rep, "wall_ms": wall_ms, "num_predict": n_predict, **fields}
            record.update(
                expected_prompt_tokens=prompt.expected_tokens, first_token=prompt.first_token
            )
            self.replies.setdefault(cid, []).append(record)
            if mode == "prefill":
                return record, fields["prompt_eval_duration"] / 1e6
            if mode == "kv_decode":
                per_token = fields["eval_duration"] / max(fields["eval_count"] - 1, 1)
                return record, per_token * n_new / 1e6
            return record, None  # e2e: the HTTP wall clock

        def produced(record: dict[str, Any]) -> list[int]:
            count = int(record["eval_count"])
            return [count - 1 if mode == "kv_decode" else count]

        return Call(setup, run, produced)

    def sample_check(self, cell: dict[str, Any], record: dict[str, Any]) -> tuple[str, str] | None:
        """(status, flag) for a reply the server cut short or answered from its cache."""
        if record["done_reason"] != "length" or record["eval_count"] < record["num_predict"]:
            return (
                "eos_truncated",
                f"Ollama stopped early: done_reason {record['done_reason']!r}, eval_count "
                f"{record['eval_count']} of num_predict {record['num_predict']} (it cannot ignore EOS)",
            )
        expected = record["expected_prompt_tokens"]
        if record["prompt_eval_cached_count"] > 0 or (
            expected is not None and record["prompt_eval_count"] < expected
        ):
            return (
                "prompt_cache_hit",
                f"prompt_eval_count {record['prompt_eval_count']} of {expected} expected, "
                f"prompt_eval_cached_count {record['prompt_eval_cached_count']}: the prefill "
                "came (partly) from Ollama's prompt cache",
            )
        if expected is not None and record["prompt_eval_count"] != expected:
            return (
                "prompt_count_mismatch",
                f"prompt_eval_count {record['prompt_eval_count']} != {expected} expected tokens",
            )
        return None

    def verdict(self, cell: dict[str, Any], compile_delta: dict[str, Any]) -> Verdict:
        replies = self.replies.get(cell["id"], [])
        evidence = {
            "server": self.server,
            "model": {"name": self.model_name, "source": self.model_source},
            "replies": replies,
            "load_duration_ms": [r["load_duration"] / 1e6 for r in replies],
            "fresh_prompts": (
                "first token replaced per request, exact prompt_eval_count checked"
                if self.prompts is not None and self.prompts.tokenizer is not None
                else "distinct first word per request; the count is not predictable for a tag"
            ),
            "phase_definition": PHASE_DEFINITIONS[cell["mode"]],
        }
        return Verdict([], evidence)


PHASE_DEFINITIONS = {
    "prefill": "prompt_eval_duration of a 1-token request (server clock)",
    "kv_decode": "eval_duration / (eval_count - 1) x max_new_tokens of a (n+1)-token request",
    "e2e_kv": "HTTP wall clock of an n-token request (load_duration kept apart)",
    "generate": "HTTP wall clock of an n-token request with the cell's sampling",
}
