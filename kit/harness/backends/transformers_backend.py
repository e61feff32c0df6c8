"""transformers eager and torch.compile (Inductor), phase-separated.

prefill   = one forward with use_cache=True on the pre-tokenized prompt (1 token produced)
kv_decode = after an untimed prefill, exactly max_new_tokens one-token forwards with the KV cache
e2e_kv    = prefill + (max_new_tokens - 1) decode steps: max_new_tokens tokens in all
generate  = one `generate(min_new_tokens = max_new_tokens)` call, as TR117 measured
No step stops at EOS: output length is forced, then verified by the caller.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kit.harness.backends.base import Call, Verdict, left_pad
from kit.harness.timing import Timer

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
FATAL_MARKERS = (
    "illegal memory access",
    "device-side assert",
    "CUDA error",
    "cudaError",
    "NCCL error",
)


class TransformersBackend:
    def __init__(self, spec: dict[str, Any]) -> None:
        import torch

        self.torch = torch
        self.spec = spec
        first = spec["cells"][0]
        self.device = first["device"]
        self.dtype_name = first["dtype"]
        self.compile_cfg: dict[str, Any] | None = first.get("compile")
        self.compiles = first["backend"] == "transformers-compile"
        self.cache_kind = first.get("cache", "dynamic")
        self.static_cache = first.get("static_cache", "fresh")
        self._caches: dict[tuple[int, int], Any] = {}
        # The last cell's input tensors (key: prompt ids, padding, steps): built once, outside
        # every timed region, and passed to each of its repetitions (TR126 tokenizes once).
        self._memo: tuple[Any, tuple[Any, ...]] | None = None
        self.cache_dir = Path(spec.get("compile_cache_dir") or ".")
        self.timer = Timer(torch, self.device)
        self.model: Any = None
        self.pad_id = 0
        torch.set_grad_enabled(False)

    # -- group level ------------------------------------------------------------------------
    def unavailable(self) -> str | None:
        if self.device == "cuda" and not self.torch.cuda.is_available():
            return "device cuda requested but torch.cuda.is_available() is False in the measuring process"
        if self.dtype_name not in DTYPES:
            return f"dtype {self.dtype_name} is not supported by the transformers backend"
        return None

    def load(self) -> dict[str, Any]:
        from transformers import AutoModelForCausalLM

        torch = self.torch
        torch.manual_seed(int(self.spec["cells"][0]["seed"]))
        dtype = getattr(torch, DTYPES[self.dtype_name])
        model = AutoModelForCausalLM.from_pretrained(self.spec["model_dir"], dtype=dtype)
        self.model = model.to(self.device).eval()
        cfg = self.model.config
        self.pad_id = int(cfg.eos_token_id if cfg.eos_token_id is not None else 0)
        details: dict[str, Any] = {
            "model_class": type(self.model).__name__,
            "attn_implementation": getattr(cfg, "_attn_implementation", None),
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }
        if self.compiles and self.compile_cfg:
            details["compile"] = self._compile()
        self.timer.sync()
        return details

    def _compile(self) -> dict[str, Any]:
        import torch._dynamo
        import torch._inductor.config as inductor_config

        cfg = self.compile_cfg or {}

        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        # One process measures many prompt lengths; with dynamic=False each new length is a
        # recompile. Past the default limit (8) dynamo silently runs the frame EAGER, which
        # would make later "compiled" cells fake. Raise it, and record it.
        # A matrix may set its own (`compile.recompile_limit`); a frame past it is detected in
        # the verdict either way. (kit.matrix.estimate.DEFAULT_RECOMPILE_LIMIT repeats the 64:
        # the UI side never imports the harness.)
        limit = cfg.get("recompile_limit")
        torch._dynamo.config.recompile_limit = (
            int(limit) if limit else max(64, int(torch._dynamo.config.recompile_limit))
        )
        if not self.spec["cells"][0].get("cudagraphs", True):
            inductor_config.triton.cudagraphs = False
        self.model.forward = torch.compile(
            self.model.forward,
            backend=cfg.get("backend", "inductor"),
            mode=None if cfg.get("mode", "default") == "default" else cfg["mode"],
            fullgraph=bool(cfg.get("fullgraph", False)),
            dynamic=cfg.get("dynamic"),
        )
        return {
            "settings": cfg,
            "suppress_errors": bool(torch._dynamo.config.suppress_errors),
            "recompile_limit": int(torch._dynamo.config.recompile_limit),
            "automatic_dynamic_shapes": bool(torch._dynamo.config.automatic_dynamic_shapes),
            "inductor_cudagraphs": bool(inductor_config.triton.cudagraphs),
            "cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
        }

    def is_fatal(self, error: BaseException) -> bool:
        if self.compiles:
            # After an error inside a compiled (and possibly CUDA-graphed) forward, dynamo's
            # and the CUDA graph trees' state is unknown: on the H100 one "overwritten by a
            # subsequent run" error made every later cell of the process fail with an
            # AssertionError. Each cell's crash must be its own: continue in a fresh process.
            return True
        text = f"{type(error).__name__}: {error}"
        return any(marker in text for marker in FATAL_MARKERS) and "out of memory" not in text

    # -- cell level -------------------------------------------------------------------------
    def skip_reason(self, cell: dict[str, Any]) -> str | None:
        if cell.get("quantization") == "int8":
            return (
                "int8 is a TR117 quantization label that the kit does not apply to transformers "
                "backends; running fp32 under that label would be a fake label"
            )
        if cell["batch_size"] > 1 and cell["mode"] != "generate":
            return "batched prefill/kv_decode/e2e_kv are not implemented; batch cells use mode generate"
        return None

    def compile_counters(self) -> dict[str, Any]:
        if not self.compiles:
            return {}
        from torch._dynamo.utils import counters

        breaks = dict(counters["graph_break"])
        return {
            "frames_total": int(counters["frames"]["total"]),
            "frames_ok": int(counters["frames"]["ok"]),
            "unique_graphs": int(counters["stats"]["unique_graphs"]),
            "graph_breaks": int(sum(breaks.values())),
            "graph_break_reasons": {str(k)[:200]: int(v) for k, v in list(breaks.items())[:5]},
            # Hits: this process found its graphs in the group's own (precompiled) cache.
            "fxgraph_cache_hit": int(counters["inductor"]["fxgraph_cache_hit"]),
            "fxgraph_cache_miss": int(counters["inductor"]["fxgraph_cache_miss"]),
            # Frames dynamo gave up on at its recompile limit (they run eager from then on).
            "recompile_limit_hits": int(
                sum(
                    n
                    for reason, n in counters["unimplemented"].items()
                    if str(reason).startswith(RECOMPILE_LIMIT_MARK)
                )
            ),
        }

    def _inputs(
        self, prompt_ids: list[list[int]], pad_to: int | None, steps: int
    ) -> tuple[Any, ...]:
        """(input ids, mask, position ids, the prefill's cache positions, each decode step's
        position ids, each step's cache position) on the device: the same tensors for every
        call of a cell, built at its first call. A fresh copy per repetition cost a CUDA graph
        replay an extra input copy (+3 to +10% of a sub-ms prefill on the H200,
        scripts/bench/overhead_parts.py); positions made per decode step were host-to-device
        copies inside the timed region."""
        key = (tuple(tuple(r) for r in prompt_ids), pad_to, steps)
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        torch = self.torch
        rows, masks = left_pad(prompt_ids, pad_to, self.pad_id)
        input_ids = torch.tensor(rows, dtype=torch.long, device=self.device)
        mask = torch.tensor(masks, dtype=torch.long, device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        length = input_ids.shape[1]
        ahead = torch.arange(1, steps + 1, dtype=torch.long, device=self.device)
        # [i] is step i's (batch, 1) position ids: each row's own next position (left padding).
        step_positions = (positions[:, -1:] + ahead).T.unsqueeze(-1).contiguous()
        step_cache = torch.arange(length, length + steps, device=self.device).view(-1, 1)
        prefill_cache = torch.arange(length, device=self.device)
        tensors = (input_ids, mask, positions, prefill_cache, step_positions, step_cache)
        self._memo = (key, tensors)
        return tensors

    def _new_cache(self, batch: int, max_len: int) -> Any:
        if self.cache_kind != "static":
            return None
        from transformers import StaticCache

        key = (batch, max_len)
        cache = self._caches.get(key)
        if cache is not None:  # static_cache: reuse
            cache.reset()  # in the call's setup: outside the timed region
            return cache
        cache = StaticCache(config=self.model.config, max_cache_len=max_len)
        if self.static_cache == "preallocated":
            # transformers allocates a StaticCache's tensors at their first update: inside the
            # model's forward, so inside the compiled region when the whole forward is compiled
            # (its docs: call early_initialization then), where it also skips marking them as
            # static addresses. Under reduce-overhead they then live in the CUDA graphs' pool.
            self._allocate(cache, batch)
        if self.static_cache != "fresh":
            self._caches[key] = cache
        return cache

    def _allocate(self, cache: Any, batch: int) -> None:
        text = self.model.config.get_text_config()
        heads = int(getattr(text, "num_key_value_heads", None) or text.num_attention_heads)
        head_dim = int(
            getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        )
        cache.early_initialization(batch, heads, head_dim, self.model.dtype, self.model.device)

    def _select(self, logits: Any, cell: dict[str, Any], generator: Any) -> Any:
        torch = self.torch
        sampling = cell.get("sampling") or {}
        last = logits[:, -1, :]
        if not sampling.get("do_sample"):
            return last.argmax(dim=-1, keepdim=True)
        probs = torch.softmax(last.float() / float(sampling.get("temperature", 1.0)), dim=-1)
        top_p = float(sampling.get("top_p", 1.0))
        if top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < top_p
            sorted_p = sorted_p * keep
            choice = torch.multinomial(
                sorted_p / sorted_p.sum(-1, keepdim=True), 1, generator=generator
            )
            return order.gather(-1, choice)
        return torch.multinomial(probs, 1, generator=generator)

    def call(self, cell: dict[str, Any], prompt_ids: list[list[int]], rep: int) -> Call:
        torch = self.torch
        model = self.model
        mode = cell["mode"]
        n_new = int(cell["max_new_tokens"])
        input_ids, mask, positions, prefill_cache, step_positions, step_cache = self._inputs(
            prompt_ids, cell.get("pad_to_multiple"), n_new
        )
        batch, length = input_ids.shape
        max_len = length + n_new + 1
        static = self.cache_kind == "static"
        generator = None
        if (cell.get("sampling") or {}).get("do_sample"):
            generator = torch.Generator(device=self.device).manual_seed(int(cell["seed"]) + rep)

        def prefill(cache: Any) -> tuple[Any, Any]:
            kwargs: dict[str, Any] = {
                "attention_mask": mask,
                "position_ids": positions,
                "use_cache": True,
            }
            if cache is not None:
                kwargs["past_key_values"] = cache
                kwargs["cache_position"] = prefill_cache
            out = model(input_ids=input_ids, **kwargs)
            return out.past_key_values, self._select(out.logits, cell, generator)

        def decode(past: Any, token: Any, steps: int) -> int:
            step_mask = mask
            if static:
                # A StaticCache holds max_len positions: the mask has that length from the
                # start (future positions 0, set to 1 as each token arrives), so every step has
                # the same input shapes: one graph for all steps, not one recompile per step
                # (with dynamic=False, past dynamo's recompile limit a step ran EAGER). Same
                # logits as a growing mask (tests/test_static_decode.py).
                step_mask = torch.cat([mask, mask.new_zeros((batch, max_len - length))], dim=-1)
            produced = 0
            for i in range(steps):
                if static:
                    step_mask[:, length + i] = 1
                else:
                    step_mask = torch.cat([step_mask, step_mask.new_ones((batch, 1))], dim=-1)
                kwargs: dict[str, Any] = {
                    "past_key_values": past,
                    "attention_mask": step_mask,
                    "position_ids": step_positions[i],
                    "use_cache": True,
                }
                if static:
                    kwargs["cache_position"] = step_cache[i]
                out = model(input_ids=token, **kwargs)
                past = out.past_key_values
                token = self._select(out.logits, cell, generator)
                produced += 1
            return produced

        if mode == "prefill":
            return Call(
                lambda: self._new_cache(batch, max_len),
                lambda cache: prefill(cache),
                lambda _r: [1] * batch,
            )
        if mode == "kv_decode":

            def setup() -> tuple[Any, Any]:
                return prefill(self._new_cache(batch, max_len))

            return Call(setup, lambda st: decode(st[0], st[1], n_new), lambda r: [int(r)] * batch)
        if mode == "e2e_kv":

            def e2e(cache: Any) -> int:
                past, token = prefill(cache)
                return 1 + decode(past, token, n_new - 1)

            return Call(lambda: self._new_cache(batch, max_len), e2e, lambda r: [int(r)] * batch)
        if mode == "generate":
            sampling = cell.get("sampling") or {}
            kwargs: dict[str, Any] = {
                "attention_mask": mask,
                "max_new_tokens": n_new,
                "min_new_tokens": n_new,
                "do_sample": bool(sampling.get("do_sample")),
                "pad_token_id": self.pad_id,
            }
            if sampling.get("do_sample"):
                kwargs.update(
                    temperature=float(sampling.get("temperature", 1.0)),
                    top_p=float(sampling.get("top_p", 1.0)),
                )
            if self.cache_kind == "static":
                kwargs["cache_implementation"] = "static"

            def gen(_state: Any) -> Any:
                torch.manual_seed(int(cell["seed"]) + rep)
                return model.generate(input_ids, **kwargs)

            return Call(lambda: None, gen, lambda out: [int(out.shape[1] - length)] * batch)
        raise ValueError(f"unknown mode {mode!r}")

    def verdict(self, cell: dict[str, Any], compile_delta: dict[str, Any]) -> Verdict:
        if not self.compiles:
            return Verdict(evidence={"compiled": False})
        reasons = []
        cfg = self.compile_cfg or {}
        kernels = inductor_artifacts(self.cache_dir)
        after = self.compile_counters()
        evidence = {
            "compiled": True,
            "settings": cfg,
            "first_call_counters": compile_delta,
            "group_counters": after,
            "inductor_artifacts": kernels,
        }
        if self.spec.get("precompile"):
            # Compiled ahead by this group's own precompile process, into this same cache.
            evidence["precompile"] = self.spec["precompile"]
        if cfg.get("backend", "inductor") != "inductor":
            reasons.append(
                f"compile backend is {cfg.get('backend')}, not Inductor: the 'compile' label would be fake"
            )
        if after.get("unique_graphs", 0) == 0:
            reasons.append("torch.compile captured no graph: the cell ran eager")
        elif kernels["output_code_modules"] == 0:
            reasons.append(
                "no Inductor output code in the group's fresh cache dir: not compiled by Inductor"
            )
        limit = int(self.torch._dynamo.config.recompile_limit)
        reasons.extend(_dynamo_fallbacks(after, compile_delta, limit))
        return Verdict(reasons, evidence)


RECOMPILE_LIMIT_MARK = "Dynamo recompile limit exceeded"  # dynamo's unimplemented() gb_type


def _dynamo_fallbacks(
    group: dict[str, Any], compile_delta: dict[str, Any], limit: int | None = None
) -> list[str]:
    """Reasons from dynamo's counters. A frame dynamo gave up on anywhere in this process so
    far (its recompile limit, or a compile failure) runs EAGER from then on, for this cell
    and every later one: it is counted over the group process, not the cell. A graph compiled
    during this cell's timed calls put compile time in its samples."""
    eager = int(group.get("frames_total", 0)) - int(group.get("frames_ok", 0))
    hits = int(group.get("recompile_limit_hits", 0))
    timed = compile_delta.get("during_timed_calls") or {}
    reasons = []
    if hits > 0:
        reasons.append(
            f"dynamo hit its recompile limit ({limit}) on {hits} frame(s) in this group "
            "process so far: from then on a shape it had not compiled runs eager, under the "
            "compiled label; use dynamic shapes, a static cache, or a compile.recompile_limit "
            "above the shapes the group makes"
        )
    elif eager > 0:
        reasons.append(
            f"dynamo did not compile {eager} frame(s) in this group process so far (its "
            "recompile limit, or a compile failure): such frames run eager from then on, under "
            "the compiled label; raise compile.recompile_limit, or use dynamic shapes"
        )
    if int(timed.get("unique_graphs", 0)) > 0:
        reasons.append(
            f"{timed['unique_graphs']} graph(s) were compiled during the timed calls: those "
            "samples include compile time"
        )
    return reasons


def inductor_artifacts(cache_dir: Path) -> dict[str, int]:
    """Count what Inductor and Triton wrote into the group's own (fresh) cache directories."""
    counts = {"output_code_modules": 0, "cpp_kernels": 0, "triton_kernels": 0}
    roots = {
        cache_dir,
        Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR", cache_dir)),
        Path(os.environ.get("TRITON_CACHE_DIR", cache_dir)),
    }
    seen: set[Path] = set()
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            if path in seen or not path.is_file():
                continue
            seen.add(path)
            if path.suffix == ".py" and "triton" not in path.parts[-2:-1]:
                counts["output_code_modules"] += 1
            elif path.suffix == ".cpp":
                counts["cpp_kernels"] += 1
            elif path.suffix in (".cubin", ".hsaco"):
                counts["triton_kernels"] += 1
    return counts
