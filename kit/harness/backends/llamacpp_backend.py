"""llama.cpp through llama-cpp-python, on the kit's own GGUF export of the same checkpoint.

The prompt is the harness's exact token ids (`Llama.eval`, no tokenizer in between). Every
repetition starts with `reset()` (untimed): llama-cpp-python keeps the evaluated tokens and
would otherwise reuse them as a prompt cache, making repeated prefills nearly free.
Modes, as in transformers_backend (greedy unless the cell samples; EOS never stops a loop):
  prefill   = eval(prompt) + picking the first token (timed to the first token)
  kv_decode = after an untimed prefill, max_new_tokens single-token evals
  e2e_kv    = prefill + (max_new_tokens - 1) single-token evals; generate: the same, sampled
Beside the wall clock, llama.cpp's own perf counters (llama_perf_context, reset before each
repetition) are kept per repetition in the cell's evidence: t_p_eval_ms / n_p_eval (prompt
batches) and t_eval_ms / n_eval. llama.cpp books a 1-token batch as "eval" (so a 1-token
prompt is eval, not p_eval) and reports counts clamped to >= 1.

Integrity: before the first repetition of each cell, when transformers is importable, the
first-step logits are compared with transformers' on the same ids (fp32 1e-3, fp16 1e-2);
a failure, or a cached GGUF whose bytes differ from its manifest, marks the cell degraded.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from kit.harness.backends.base import Call, Verdict
from kit.harness.timing import Timer

# "About 1e-3 / 1e-2", widened by what ggml does on CPU and was measured (random weights,
# logit std 0.4): fp32 6.7e-4 (gpt2-25m) and 1.16e-3 (gpt2-100m) — ggml's CPU GELU goes through
# an f16 lookup table; fp16 up to 1.3e-2 — its f16 matmul rounds the activations to f16 too.
PARITY_TOLERANCE = {"fp32": 2e-3, "fp16": 2e-2}


def _head_size(model_dir: Path) -> int | None:
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if config.get("model_type") == "gpt2":
        return int(config["n_embd"]) // int(config["n_head"])
    heads = int(config.get("num_attention_heads") or 0)
    return (
        int(config.get("head_dim") or (int(config.get("hidden_size", 0)) // heads if heads else 0))
        or None
    )


def _threads() -> int:
    if os.environ.get("KIT_LLAMACPP_THREADS"):
        return int(os.environ["KIT_LLAMACPP_THREADS"])
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class LlamaCppBackend:
    compiles = False

    def __init__(self, spec: dict[str, Any]) -> None:
        try:
            import llama_cpp
        except ImportError as err:
            llama_cpp = None  # type: ignore[assignment]
            self.missing: str | None = (
                f"llama-cpp-python is not importable in {sys.executable} ({err}): run "
                "./scripts/setup-llamacpp (installs the cached wheel, builds it once if absent)"
            )
        else:
            self.missing = None
        import numpy as np

        self.np = np
        self.llama_cpp: Any = llama_cpp
        self.spec = spec
        first = spec["cells"][0]
        self.device = first["device"]
        self.dtype_name = first["dtype"]
        # llama_get_logits synchronizes the backend: the timed call ends after the last token
        # was picked from host logits, so perf_counter is the whole call on CPU and GPU.
        self.timer = Timer(None, "cpu")
        self.phases: list[dict[str, Any]] = []
        self.llm: Any = None
        self.export: Any = None
        self.context: dict[str, Any] = {}
        self.perf: dict[str, list[dict[str, Any]]] = {}
        self.parity: dict[str, dict[str, Any]] = {}
        self._reference: Any = None

    # -- group level ------------------------------------------------------------------------
    def unavailable(self) -> str | None:
        if self.missing:
            return self.missing
        if self.dtype_name not in PARITY_TOLERANCE:
            return f"dtype {self.dtype_name} is not supported by the llama-cpp backend (fp32, fp16)"
        head = _head_size(Path(self.spec["model_dir"]))
        if head is not None and head < 2:
            # Measured with llama-cpp-python 0.3.36: head size 1 (tiny-gpt2: n_embd 2, n_head
            # 2) aborts the process in llama.cpp's attention (GGML_ASSERT ggml_can_mul_mat);
            # head sizes 2..384 run.
            return f"head size {head} is below what llama.cpp's attention supports (>= 2): it aborts (GGML_ASSERT ggml_can_mul_mat)"
        if self.device == "cuda" and not self.llama_cpp.llama_supports_gpu_offload():
            return (
                "device cuda requested but this llama-cpp-python build has no GPU offload "
                "(a CPU build): use the docker/llamacpp image built with GGML_CUDA=on"
            )
        return None

    def _phase(self, name: str, t0: int, t1: int, detail: dict[str, Any]) -> None:
        self.phases.append(
            {"phase": name, "cell": None, "t0_ns": t0, "t1_ns": t1, "ms": (t1 - t0) / 1e6}
            | {"detail": detail}
        )

    def load(self) -> dict[str, Any]:
        from kit.harness.backends.gguf_export import cached_gguf

        model_dir = Path(self.spec["model_dir"])
        t0 = time.monotonic_ns()
        self.export = cached_gguf(model_dir, self.dtype_name)
        t1 = time.monotonic_ns()
        self._phase("export", t0, t1, self.export.to_dict())
        longest = max(len(p[0]) for p in self.spec["prompts"].values())
        most_new = max(int(c["max_new_tokens"]) for c in self.spec["cells"])
        n_ctx = -(-(longest + most_new + 8) // 64) * 64
        threads = _threads()
        self.context = {
            "n_ctx": n_ctx,
            "n_batch": max(512, longest),
            "n_threads": threads,
            "n_gpu_layers": -1 if self.device == "cuda" else 0,
            "flash_attn": False,  # off: GPT-2 head sizes (192, 384) lack flash kernels
            "logits_all": False,
            "seed": int(self.spec["cells"][0]["seed"]),
        }
        t0 = time.monotonic_ns()
        self.llm = self.llama_cpp.Llama(
            model_path=str(self.export.path),
            n_ctx=n_ctx,
            n_batch=self.context["n_batch"],
            n_ubatch=self.context["n_batch"],
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=self.context["n_gpu_layers"],
            flash_attn=False,
            logits_all=False,
            seed=self.context["seed"],
            verbose=False,
        )
        t1 = time.monotonic_ns()
        system = self.llama_cpp.llama_print_system_info()
        self.context["system_info"] = system.decode() if isinstance(system, bytes) else system
        self.context["gpu_offload"] = bool(self.llama_cpp.llama_supports_gpu_offload())
        self._phase("context", t0, t1, self.context)
        return {
            "llama_cpp_python": self.llama_cpp.__version__,
            "gguf_file": str(self.export.path),
            **self.context,
        }

    def is_fatal(self, error: BaseException) -> bool:
        text = str(error)
        return "CUDA error" in text or "ggml_cuda" in text

    # -- cell level -------------------------------------------------------------------------
    def skip_reason(self, cell: dict[str, Any]) -> str | None:
        if cell.get("quantization") == "int8":
            return "int8 (a TR117 label) is not exported by the kit's GGUF writer (f32, f16); running f32 under it would be a fake label"
        if int(cell.get("batch_size", 1)) > 1 or int(cell.get("concurrency", 1)) > 1:
            return "the llama-cpp backend runs one sequence per call (llama-cpp-python's Llama): batch and concurrent cells are not implemented"
        if cell.get("cache") == "static" or cell.get("pad_to_multiple"):
            return "llama.cpp manages its own KV cache and never pads prompts: cache static / padded prompts do not apply"
        return None

    def compile_counters(self) -> dict[str, Any]:
        return {}

    def _logits(self) -> Any:
        np = self.np
        n_vocab = self.llm.n_vocab()
        return np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(n_vocab,))

    def _pick(self, cell: dict[str, Any], rng: Any) -> int:
        np = self.np
        logits = self._logits()
        sampling = cell.get("sampling") or {}
        if not sampling.get("do_sample"):
            return int(logits.argmax())
        scaled = logits.astype(np.float64) / float(sampling.get("temperature", 1.0))
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        order = np.argsort(-probs)
        sorted_p = probs[order]
        keep = sorted_p.cumsum() - sorted_p < float(sampling.get("top_p", 1.0))
        kept = sorted_p * keep
        return int(order[rng.choice(len(kept), p=kept / kept.sum())])

    def _fresh(self) -> None:
        """Untimed, before every repetition: no tokens kept, fresh perf counters."""
        self.llm.reset()
        self.llama_cpp.llama_perf_context_reset(self.llm.ctx)

    def _read_perf(self, cell_id: str, rep: int) -> None:
        data = self.llama_cpp.llama_perf_context(self.llm.ctx)
        self.perf.setdefault(cell_id, []).append(
            {
                "rep": rep,
                "t_p_eval_ms": float(data.t_p_eval_ms),
                "n_p_eval": int(data.n_p_eval),
                "t_eval_ms": float(data.t_eval_ms),
                "n_eval": int(data.n_eval),
                "n_graph_reused": int(getattr(data, "n_reused", 0)),  # compute-graph reuse
            }
        )

    def call(self, cell: dict[str, Any], prompt_ids: list[list[int]], rep: int) -> Call:
        if cell["id"] not in self.parity:
            self.parity[cell["id"]] = self.check_parity(prompt_ids[0])  # untimed, before rep 0
        ids = list(prompt_ids[0])
        n_new = int(cell["max_new_tokens"])
        rng = self.np.random.default_rng(int(cell["seed"]) + rep)
        cid = cell["id"]

        def first() -> int:
            self.llm.eval(ids)
            return self._pick(cell, rng)

        def steps(token: int, count: int) -> int:
            for _ in range(count):
                self.llm.eval([token])
                token = self._pick(cell, rng)
            return count

        def produced(n: int) -> list[int]:
            self._read_perf(cid, rep)  # right after the timed call
            return [n]

        def decode_setup() -> int:
            self._fresh()
            token = first()
            self.llama_cpp.llama_perf_context_reset(self.llm.ctx)  # count the decode only
            return token

        def prefill(_state: Any) -> int:
            first()
            return 1

        mode = cell["mode"]
        if mode == "prefill":
            return Call(self._fresh, prefill, produced)
        if mode == "kv_decode":
            return Call(decode_setup, lambda token: steps(token, n_new), produced)
        if mode in ("e2e_kv", "generate"):
            return Call(self._fresh, lambda _s: 1 + steps(first(), n_new - 1), produced)
        raise ValueError(f"unknown mode {mode!r}")

    def check_parity(self, ids: list[int]) -> dict[str, Any]:
        """First-step logits (last prompt position) of llama.cpp vs transformers, same ids."""
        tolerance = PARITY_TOLERANCE[self.dtype_name]
        try:
            import torch
            from transformers import AutoModelForCausalLM
        except ImportError:
            return {"ok": None, "skipped": "transformers is not importable in this process"}
        np = self.np
        try:
            if self._reference is None:
                torch.set_grad_enabled(False)
                dtype = torch.float16 if self.dtype_name == "fp16" else torch.float32
                # The same weights (fp16-rounded for f16) in fp32 arithmetic, as llama.cpp
                # keeps activations f32.
                self._reference = (
                    AutoModelForCausalLM.from_pretrained(
                        self.spec["model_dir"], dtype=dtype, attn_implementation="eager"
                    )
                    .float()
                    .eval()
                )
            ref = self._reference(input_ids=torch.tensor([ids])).logits[0, -1].float().numpy()
            self._fresh()
            self.llm.eval(ids)
            ours = self._logits().astype(np.float32).copy()
        except Exception as err:
            return {"ok": False, "error": f"{type(err).__name__}: {err}"[:500]}
        diff = float(np.abs(ours - ref).max())
        return {
            "ok": bool(diff <= tolerance),
            "max_abs_diff": diff,
            "tolerance": tolerance,
            "reference": f"transformers eager attention, {self.dtype_name} weights in fp32, CPU",
            "same_greedy_token": bool(ours.argmax() == ref.argmax()),
        }

    def verdict(self, cell: dict[str, Any], compile_delta: dict[str, Any]) -> Verdict:
        np = self.np
        reasons: list[str] = []
        parity = self.parity.get(cell["id"], {})
        if parity.get("ok") is False:
            shown = parity.get("error") or (
                f"max |logits diff| {parity.get('max_abs_diff'):.3g} > {parity.get('tolerance')}"
            )
            reasons.append(f"parity with transformers failed before timing: {shown}")
        if self.export is not None and not self.export.manifest_ok:
            reasons.append(
                f"the cached GGUF's bytes differ from its manifest; delete {self.export.path.parent} to re-export"
            )
        perf = self.perf.get(cell["id"], [])
        timed = [p for p in perf if p["rep"] >= int(cell["warmup"])]
        prompt = len(self.spec["prompts"][cell["id"]][0])
        if cell["mode"] in ("prefill", "e2e_kv", "generate") and any(
            p["n_p_eval"] + (p["n_eval"] if prompt == 1 else 0) < prompt for p in timed
        ):
            # After reset() llama.cpp must evaluate every prompt token again.
            reasons.append(
                "llama.cpp evaluated fewer prompt tokens than the prompt has (cache reuse?)"
            )

        def median(key: str) -> float | None:
            values = [p[key] for p in timed]
            return float(np.median(values)) if values else None

        evidence = {
            "llama_cpp_python": self.llama_cpp.__version__,
            "gguf": {
                "key": self.export.key,
                "sha256": self.export.sha256,
                "reused": self.export.reused,
                "manifest_ok": self.export.manifest_ok,
            }
            if self.export is not None
            else None,
            "context": {k: v for k, v in self.context.items() if k != "system_info"},
            "parity": parity,
            "reset_before_each_repetition": True,
            "perf_counters": {
                "per_rep": perf,
                "median_t_p_eval_ms": median("t_p_eval_ms"),
                "median_t_eval_ms": median("t_eval_ms"),
                "note": "llama_perf_context; a 1-token batch is booked as eval; counts clamped to >= 1",
            },
            "phase_definition": PHASE_DEFINITIONS[cell["mode"]],
        }
        return Verdict(reasons, evidence)


PHASE_DEFINITIONS = {
    "prefill": "wall clock of eval(prompt) + picking the first token, after reset()",
    "kv_decode": "wall clock of max_new_tokens single-token evals after an untimed prefill",
    "e2e_kv": "wall clock of prefill + (max_new_tokens - 1) single-token evals, after reset()",
    "generate": "as e2e_kv, with the cell's sampling",
}
