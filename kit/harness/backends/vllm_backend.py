"""vLLM's offline engine (`vllm.LLM`), phase-separated like the transformers backends.

Runs in its own interpreter (.venv-vllm or the vllm image): vLLM pins its own torch. Prompts are
the harness's exact token ids (TokensPrompt; no tokenizer is loaded), the output length is
forced (ignore_eos, min_tokens = max_tokens) and sampling is greedy unless the cell says
otherwise. Engine start-up (load, profiling, compilation, CUDA-graph capture) is the
`engine_start` phase. Prefix caching is off, so repetitions never hit cached prompt blocks.

Phases, from the engine's own per-request timestamps (RequestOutput.metrics, a
RequestStateStats: scheduled_ts, first_token_ts, last_token_ts on the engine core's monotonic
clock, filled when stats logging is on) — method `engine_metrics`:
  prefill   = a 1-token request: first_token_ts - scheduled_ts
  kv_decode = a (max_new_tokens + 1)-token request: last_token_ts - first_token_ts, i.e. the
              max_new_tokens tokens after the first (as transformers' kv_decode after prefill)
  e2e_kv, generate = a max_new_tokens request: wall clock around `LLM.generate`
When the metrics are missing, method `wall_difference`: prefill = wall of a 1-token request,
kv_decode = wall(full request) - wall(1-token request), both timed inside the repetition.
Batch cells submit their prompts together in one `generate`; a phase then spans all requests.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from kit.harness.backends.base import Call, Verdict
from kit.harness.timing import Timed, Timer

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class PhaseTimer(Timer):
    """Wall stamps always; latency_ms is the engine-measured phase when the run returns one
    (a `(result, phase_ms)` pair), else the wall time."""

    def __init__(self) -> None:
        super().__init__(None, "cpu")

    def measure(self, fn: Callable[[Any], Any], state: Any) -> Timed:
        timed = super().measure(fn, state)
        result, phase_ms = timed.result
        latency = timed.latency_ms if phase_ms is None else phase_ms
        return Timed(latency, None, timed.t0_ns, timed.t1_ns, result)


class VllmBackend:
    compiles = False

    def __init__(self, spec: dict[str, Any]) -> None:
        try:
            import vllm
        except ImportError as err:
            vllm = None
            note = os.environ.get("KIT_INTERPRETER_NOTE")
            self.missing: str | None = (
                f"vLLM is not importable in {sys.executable} ({err}); it runs in its own venv: "
                "run ./scripts/setup-vllm (creates .venv-vllm) or set KIT_VLLM_PYTHON"
                + (f" ({note})" if note else "")
            )
        else:
            self.missing = None
        self.vllm: Any = vllm
        self.spec = spec
        first = spec["cells"][0]
        self.device = first["device"]
        self.dtype_name = first["dtype"]
        self.timer = PhaseTimer()
        self.phases: list[dict[str, Any]] = []
        self.llm: Any = None
        self.engine_args: dict[str, Any] = {}
        self.engine_facts: dict[str, Any] = {}
        self.methods: dict[str, str] = {}
        self.prompt_ids_match: dict[str, bool] = {}

    # -- group level ------------------------------------------------------------------------
    def unavailable(self) -> str | None:
        if self.missing:
            return self.missing
        if self.dtype_name not in DTYPES:
            return f"dtype {self.dtype_name} is not supported by the vllm backend"
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            return "device cuda requested but this vLLM build sees no CUDA device (CPU build?)"
        if self.device == "cpu" and torch.cuda.is_available():
            return "device cpu requested but this is vLLM's CUDA build; use the CPU build (scripts/setup-vllm)"
        return None

    def _engine_args(self) -> dict[str, Any]:
        first = self.spec["cells"][0]
        longest = max(len(ids) for ids in (p[0] for p in self.spec["prompts"].values()))
        most_new = max(int(c["max_new_tokens"]) for c in self.spec["cells"])
        max_batch = max(int(c["batch_size"]) for c in self.spec["cells"])
        args: dict[str, Any] = {
            "model": self.spec["model_dir"],
            "skip_tokenizer_init": True,  # token-id prompts only: the harness's exact ids
            "dtype": DTYPES[self.dtype_name],
            "seed": int(first["seed"]),
            "enable_prefix_caching": False,
            # CUDA graphs as the cell allows (TR126 padded turns them off); none on CPU.
            "enforce_eager": self.device == "cpu" or not bool(first.get("cudagraphs", True)),
            "max_model_len": _round_up(longest + most_new + 8, 64),
            "max_num_seqs": max(8, max_batch),
            "disable_log_stats": False,  # fills RequestOutput.metrics (per-request timestamps)
            # On CPU this share of RAM becomes the KV cache; small: tiny models, shared hosts.
            "gpu_memory_utilization": float(
                os.environ.get(
                    "KIT_VLLM_MEMORY_UTILIZATION", "0.3" if self.device == "cpu" else "0.8"
                )
            ),
        }
        return args

    def load(self) -> dict[str, Any]:
        self.engine_args = self._engine_args()
        t0 = time.monotonic_ns()
        self.llm = self.vllm.LLM(**self.engine_args)
        t1 = time.monotonic_ns()
        self.engine_facts = self._facts()
        self.phases.append(
            {
                "phase": "engine_start",
                "cell": None,
                "t0_ns": t0,
                "t1_ns": t1,
                "ms": (t1 - t0) / 1e6,
                "detail": {"engine_args": self.engine_args, **self.engine_facts},
            }
        )
        return {"vllm": self.vllm.__version__, **self.engine_facts}

    def _facts(self) -> dict[str, Any]:
        import torch

        facts: dict[str, Any] = {"vllm": self.vllm.__version__, "torch": torch.__version__}
        try:
            config = self.llm.llm_engine.vllm_config
            comp = config.compilation_config
            mode = getattr(comp, "cudagraph_mode", None)
            facts["cudagraph_mode"] = str(getattr(mode, "name", mode))
            facts["compilation_mode"] = str(getattr(comp, "mode", getattr(comp, "level", None)))
            facts["cudagraph_capture_sizes"] = list(
                getattr(comp, "cudagraph_capture_sizes", []) or []
            )
            facts["device_type"] = str(config.device_config.device_type)
        except AttributeError as err:
            facts["config_unreadable"] = str(err)
        facts["cuda_graphs_captured"] = bool(
            self.device == "cuda"
            and not self.engine_args.get("enforce_eager")
            and facts.get("cudagraph_mode") not in (None, "NONE", "None")
        )
        return facts

    def is_fatal(self, error: BaseException) -> bool:
        text = f"{type(error).__name__}: {error}"
        return "EngineDeadError" in text or "CUDA error" in text or "illegal memory access" in text

    # -- cell level -------------------------------------------------------------------------
    def skip_reason(self, cell: dict[str, Any]) -> str | None:
        if cell.get("quantization") == "int8":
            return "int8 (a TR117 label) is not applied by the vllm backend; running it unquantized would be a fake label"
        if int(cell.get("concurrency", 1)) > 1:
            return (
                "concurrent calls from threads are not safe on vllm.LLM; dual cells are not "
                "implemented for vllm (batch cells submit their prompts together)"
            )
        if cell.get("cache") == "static" or cell.get("pad_to_multiple"):
            return "vllm manages its own paged KV cache and never pads prompts: cache static / padded prompts do not apply"
        return None

    def compile_counters(self) -> dict[str, Any]:
        return {}

    def _params(self, cell: dict[str, Any], n_tokens: int, rep: int) -> Any:
        sampling = cell.get("sampling") or {}
        kwargs: dict[str, Any] = {
            "max_tokens": n_tokens,
            "min_tokens": n_tokens,
            "ignore_eos": True,
            "detokenize": False,
        }
        if sampling.get("do_sample"):
            kwargs.update(
                temperature=float(sampling.get("temperature", 1.0)),
                top_p=float(sampling.get("top_p", 1.0)),
                seed=int(cell["seed"]) + rep,
            )
        else:
            kwargs["temperature"] = 0.0
        return self.vllm.SamplingParams(**kwargs)

    def _generate(self, prompts: list[Any], params: Any) -> list[Any]:
        return list(self.llm.generate(prompts, params, use_tqdm=False))

    def call(self, cell: dict[str, Any], prompt_ids: list[list[int]], rep: int) -> Call:
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_ids]
        n_new = int(cell["max_new_tokens"])
        mode = cell["mode"]
        one = self._params(cell, 1, rep)

        def produced(outs: list[Any]) -> list[int]:
            # The engine must have seen exactly the harness's ids (no tokenizer in between).
            same = [
                list(o.prompt_token_ids or []) == list(ids)
                for o, ids in zip(outs, prompt_ids, strict=False)
            ]
            self.prompt_ids_match[cell["id"]] = all(same) and len(outs) == len(prompt_ids)
            return [len(o.outputs[0].token_ids) for o in outs]

        def wall(params: Any) -> tuple[list[Any], float]:
            t0 = time.perf_counter_ns()
            outs = self._generate(prompts, params)
            return outs, (time.perf_counter_ns() - t0) / 1e6

        if mode == "prefill":

            def prefill(_state: Any) -> tuple[list[Any], float | None]:
                outs, wall_ms = wall(one)
                span = engine_span(outs, "scheduled_ts", "first_token_ts")
                self.methods[cell["id"]] = (
                    "engine_metrics" if span is not None else "wall_difference"
                )
                return outs, span if span is not None else wall_ms

            return Call(lambda: None, prefill, produced)
        if mode == "kv_decode":
            full = self._params(cell, n_new + 1, rep)

            def kv_decode(_state: Any) -> tuple[list[Any], float | None]:
                outs, wall_ms = wall(full)
                span = engine_span(outs, "first_token_ts", "last_token_ts")
                if span is None:
                    _, one_ms = wall(one)
                    self.methods[cell["id"]] = "wall_difference"
                    return outs, max(wall_ms - one_ms, 0.0)
                self.methods[cell["id"]] = "engine_metrics"
                return outs, span

            # The first token belongs to prefill: kv_decode produced the n after it.
            return Call(lambda: None, kv_decode, lambda outs: [n - 1 for n in produced(outs)])
        if mode in ("e2e_kv", "generate"):
            params = self._params(cell, n_new, rep)

            def whole(_state: Any) -> tuple[list[Any], None]:
                self.methods[cell["id"]] = "wall_clock"
                return self._generate(prompts, params), None

            return Call(lambda: None, whole, produced)
        raise ValueError(f"unknown mode {mode!r}")

    def verdict(self, cell: dict[str, Any], compile_delta: dict[str, Any]) -> Verdict:
        method = self.methods.get(cell["id"], "none")
        reasons: list[str] = []
        if (
            cell["device"] == "cuda"
            and cell.get("cudagraphs", True)
            and not self.engine_facts.get("cuda_graphs_captured")
        ):
            reasons.append(
                "CUDA graphs were allowed but vLLM did not capture any (cudagraph_mode NONE)"
            )
        if not self.prompt_ids_match.get(cell["id"], False):
            reasons.append("vLLM's prompt_token_ids differ from the harness's token ids")
        evidence = {
            "vllm": self.vllm.__version__,
            "prompt_ids_match": self.prompt_ids_match.get(cell["id"]),
            "engine_args": self.engine_args,
            "phase_method": method,
            "phase_definition": PHASE_DEFINITIONS.get((cell["mode"], method), method),
            **{k: v for k, v in self.engine_facts.items() if k != "vllm"},
        }
        return Verdict(reasons, evidence)


PHASE_DEFINITIONS = {
    ("prefill", "engine_metrics"): "1-token request: engine first_token_ts - scheduled_ts",
    ("prefill", "wall_difference"): "1-token request: wall clock of LLM.generate",
    ("kv_decode", "engine_metrics"): "(n+1)-token request: engine last_token_ts - first_token_ts",
    ("kv_decode", "wall_difference"): "wall((n+1)-token request) - wall(1-token request)",
    ("e2e_kv", "wall_clock"): "n-token request: wall clock of LLM.generate",
    ("generate", "wall_clock"): "n-token request: wall clock of LLM.generate",
}


def engine_span(outs: list[Any], start: str, end: str) -> float | None:
    """Milliseconds from the earliest `start` to the latest `end` timestamp over the requests
    (engine core monotonic seconds), or None when the engine did not fill them."""
    starts, ends = [], []
    for out in outs:
        metrics = getattr(out, "metrics", None)
        a, b = getattr(metrics, start, 0.0), getattr(metrics, end, 0.0)
        if not a or not b or b < a:
            return None
        starts.append(a)
        ends.append(b)
    if not starts:
        return None
    return (max(ends) - min(starts)) * 1000.0


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
