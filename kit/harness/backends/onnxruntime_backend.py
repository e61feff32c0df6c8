"""ONNX Runtime with the KV cache exported, phase-separated like the transformers backends.

Modes as in transformers_backend: prefill = one run on the prompt with an empty past;
kv_decode = max_new_tokens one-token runs feeding `present` back as `past` after an untimed
prefill; e2e_kv = prefill + (max_new_tokens - 1) decode runs; generate = the same loop with the
cell's sampling (ONNX Runtime has no generate()). No step stops at EOS.

Integrity: the session's real providers are compared with the ones asked (ONNX Runtime falls
back to CPU silently), and the first-step logits are compared with PyTorch's before timing
(TR126 tolerances). Either failure marks the cell degraded, with the numbers in the evidence.
IO binding keeps inputs, the KV cache and outputs on the provider's device; only the last
position's logits are copied to the host to pick the next token.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from kit.harness.backends.base import Call, Verdict, left_pad
from kit.harness.backends.onnx_export import Exported, cached_export, kv_names, kv_shape
from kit.harness.timing import Timer

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
PARITY_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 1e-2}
PROVIDER_FOR_DEVICE = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


class OnnxRuntimeBackend:
    compiles = False

    def __init__(self, spec: dict[str, Any]) -> None:
        import numpy as np
        import onnxruntime as ort

        self.np = np
        self.ort = ort
        self.spec = spec
        first = spec["cells"][0]
        self.device = first["device"]
        self.dtype_name = first["dtype"]
        # The timed call returns only after ONNX Runtime synchronized its stream at the end of
        # run_with_iobinding, so perf_counter is the whole call; no torch CUDA sync needed.
        self.timer = Timer(None, "cpu")
        self.phases: list[dict[str, Any]] = []  # export/session, emitted by kit.harness.group
        self.requested = requested_providers(self.device)
        self.session: Any = None
        self.torch_model: Any = None
        self.exported: Exported | None = None
        self.io_device = "cpu"
        self.parity: dict[str, dict[str, Any]] = {}
        self.pad_id = 0
        self.kv: tuple[int, int, int] = (0, 0, 0)

    # -- group level ------------------------------------------------------------------------
    def unavailable(self) -> str | None:
        if self.dtype_name not in ("fp32", "fp16"):
            return (
                f"dtype {self.dtype_name} is not supported by the onnxruntime backend (fp32, fp16)"
            )
        return None

    def _load_torch(self) -> Any:
        if self.torch_model is None:
            import torch
            from transformers import AutoModelForCausalLM

            torch.set_grad_enabled(False)
            dtype = getattr(torch, DTYPES[self.dtype_name])
            self.torch_model = AutoModelForCausalLM.from_pretrained(
                self.spec["model_dir"], dtype=dtype, attn_implementation="eager"
            ).eval()
        return self.torch_model

    def _phase(self, name: str, t0: int, t1: int, detail: dict[str, Any]) -> None:
        ms = (t1 - t0) / 1e6
        self.phases.append(
            {"phase": name, "cell": None, "t0_ns": t0, "t1_ns": t1, "ms": ms, "detail": detail}
        )

    def load(self) -> dict[str, Any]:
        model = self._load_torch()  # the parity reference, and the source of a new export
        cfg = model.config
        self.kv = kv_shape(cfg)
        self.pad_id = int(cfg.eos_token_id if cfg.eos_token_id is not None else 0)
        t0 = time.monotonic_ns()
        self.exported = cached_export(Path(self.spec["model_dir"]), self.dtype_name, lambda: model)
        t1 = time.monotonic_ns()
        self._phase(
            "export",
            t0,
            t1,
            {
                "reused": self.exported.reused,
                "export_ms": self.exported.export_ms,
                "key": self.exported.key,
                "files_sha256": self.exported.files_sha256,
                "manifest_ok": self.exported.manifest_ok,
                **self.exported.detail,
            },
        )
        options = self.ort.SessionOptions()
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        t0 = time.monotonic_ns()
        self.session = self.ort.InferenceSession(
            str(self.exported.path), sess_options=options, providers=self.requested
        )
        t1 = time.monotonic_ns()
        used = list(self.session.get_providers())
        self.io_device = "cuda" if used and used[0] in GPU_PROVIDERS else "cpu"
        self._phase(
            "session",
            t0,
            t1,
            {"requested": self.requested, "used": used, "io_binding_device": self.io_device},
        )
        return {
            "onnxruntime": self.ort.__version__,
            "available_providers": list(self.ort.get_available_providers()),
            "providers_requested": self.requested,
            "providers_used": used,
            "onnx_file": str(self.exported.path),
            "kv_layers_heads_dim": list(self.kv),
        }

    def is_fatal(self, error: BaseException) -> bool:
        text = str(error)
        return "CUDA failure" in text or "illegal memory access" in text

    # -- cell level -------------------------------------------------------------------------
    def skip_reason(self, cell: dict[str, Any]) -> str | None:
        if cell.get("quantization") == "int8":
            return "int8 (a TR117 label) is not applied by the onnxruntime backend yet; running fp32 under it would be a fake label"
        if cell.get("cache") == "static":
            return "the onnxruntime backend has a dynamic KV cache only (cache: static asked)"
        return None

    def compile_counters(self) -> dict[str, Any]:
        return {}

    def _inputs(self, prompt_ids: list[list[int]], pad_to: int | None) -> tuple[Any, Any, Any]:
        np = self.np
        rows, masks = left_pad(prompt_ids, pad_to, self.pad_id)
        mask = np.asarray(masks, dtype=np.int64)
        positions = np.clip(mask.cumsum(-1) - 1, 0, None).astype(np.int64)
        return np.asarray(rows, dtype=np.int64), mask, positions

    def _run(self, ids: Any, mask: Any, positions: Any, past: list[Any] | None) -> list[Any]:
        """One session run with IO binding; returns [logits, present...] as OrtValues."""
        ort, np = self.ort, self.np
        layers, heads, dim = self.kv
        past_names, present_names = kv_names(layers)
        io = self.session.io_binding()
        for name, array in (
            ("input_ids", ids),
            ("attention_mask", mask),
            ("position_ids", positions),
        ):
            io.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, self.io_device, 0))
        if past is None:
            dtype = np.float16 if self.dtype_name == "fp16" else np.float32
            empty = np.zeros((ids.shape[0], heads, 0, dim), dtype=dtype)
            past = [ort.OrtValue.ortvalue_from_numpy(empty, self.io_device, 0) for _ in past_names]
        for name, value in zip(past_names, past, strict=True):
            io.bind_ortvalue_input(name, value)
        for name in ["logits", *present_names]:
            io.bind_output(name, self.io_device)
        self.session.run_with_iobinding(io)
        return list(io.get_outputs())

    def _select(self, logits: Any, cell: dict[str, Any], rng: Any) -> Any:
        np = self.np
        last = logits.numpy()[:, -1, :].astype(np.float32)  # host copy of the last position
        sampling = cell.get("sampling") or {}
        if not sampling.get("do_sample"):
            return last.argmax(axis=-1)[:, None].astype(np.int64)
        scaled = last / float(sampling.get("temperature", 1.0))
        probs = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        top_p = float(sampling.get("top_p", 1.0))
        picks = []
        for row in probs:
            order = np.argsort(-row)
            sorted_p = row[order]
            keep = sorted_p.cumsum() - sorted_p < top_p
            kept = sorted_p * keep
            picks.append(order[rng.choice(len(kept), p=kept / kept.sum())])
        return np.asarray(picks, dtype=np.int64)[:, None]

    def call(self, cell: dict[str, Any], prompt_ids: list[list[int]], rep: int) -> Call:
        np = self.np
        if cell["id"] not in self.parity:
            self.parity[cell["id"]] = self.check_parity(cell, prompt_ids)  # untimed, before rep 0
        ids, mask, positions = self._inputs(prompt_ids, cell.get("pad_to_multiple"))
        batch = ids.shape[0]
        n_new = int(cell["max_new_tokens"])
        rng = np.random.default_rng(int(cell["seed"]) + rep)

        def prefill() -> tuple[list[Any], Any, Any]:
            outs = self._run(ids, mask, positions, None)
            return outs[1:], self._select(outs[0], cell, rng), mask

        def decode(state: tuple[list[Any], Any, Any], steps: int) -> int:
            past, token, step_mask = state
            produced = 0
            for i in range(steps):
                step_mask = np.concatenate([step_mask, np.ones((batch, 1), np.int64)], axis=-1)
                pos = positions[:, -1:] + 1 + i  # per row: left padding shifts positions
                outs = self._run(token, step_mask, pos, past)
                past, token = outs[1:], self._select(outs[0], cell, rng)
                produced += 1
            return produced

        mode = cell["mode"]
        if mode == "prefill":
            return Call(lambda: None, lambda _s: prefill(), lambda _r: [1] * batch)
        if mode == "kv_decode":
            return Call(prefill, lambda st: decode(st, n_new), lambda r: [int(r)] * batch)
        if mode in ("e2e_kv", "generate"):
            return Call(
                lambda: None,
                lambda _s: 1 + decode(prefill(), n_new - 1),
                lambda r: [int(r)] * batch,
            )
        raise ValueError(f"unknown mode {mode!r}")

    def check_parity(self, cell: dict[str, Any], prompt_ids: list[list[int]]) -> dict[str, Any]:
        """First-step logits (last prompt position) of ONNX Runtime vs PyTorch, same inputs."""
        import torch

        np = self.np
        ids, mask, positions = self._inputs(prompt_ids, cell.get("pad_to_multiple"))
        tolerance = PARITY_TOLERANCE[self.dtype_name]
        try:
            ours = self._run(ids, mask, positions, None)[0].numpy()[:, -1, :].astype(np.float32)
            ref = self.torch_model(
                input_ids=torch.from_numpy(ids),
                attention_mask=torch.from_numpy(mask),
                position_ids=torch.from_numpy(positions),
            ).logits[:, -1, :]
            ref_np = ref.float().numpy()
        except Exception as err:  # a broken export is a parity failure, shown as such
            return {
                "ok": False,
                "error": f"{type(err).__name__}: {err}"[:500],
                "tolerance": tolerance,
            }
        diff = float(np.abs(ours - ref_np).max())
        return {
            "ok": bool(diff <= tolerance),
            "max_abs_diff": diff,
            "tolerance": tolerance,
            "reference": f"transformers eager attention, {self.dtype_name}, CPU",
            "same_greedy_token": bool((ours.argmax(-1) == ref_np.argmax(-1)).all()),
        }

    def verdict(self, cell: dict[str, Any], compile_delta: dict[str, Any]) -> Verdict:
        assert self.exported is not None
        used = list(self.session.get_providers())
        reasons: list[str] = []
        if not used or used[0] != self.requested[0]:
            reasons.append(
                f"ONNX Runtime fell back: asked {self.requested[0]}, the session uses {used} "
                f"(available in this build: {list(self.ort.get_available_providers())})"
            )
        parity = self.parity.get(cell["id"], {})
        if not parity.get("ok"):
            shown = parity.get("error") or (
                f"max |logits diff| {parity.get('max_abs_diff'):.3g} > {parity.get('tolerance')}"
            )
            reasons.append(f"parity with PyTorch failed before timing: {shown}")
        if not self.exported.manifest_ok:
            reasons.append(
                f"the cached export's bytes differ from its manifest; delete {self.exported.path.parent} to re-export"
            )
        evidence = {
            "onnxruntime": self.ort.__version__,
            "providers_requested": self.requested,
            "providers_used": used,
            "io_binding": True,
            "io_binding_device": self.io_device,
            "parity": parity,
            "export": {
                "key": self.exported.key,
                "reused": self.exported.reused,
                "files_sha256": self.exported.files_sha256,
                "manifest_ok": self.exported.manifest_ok,
                "kv_cache": "past/present key-values in and out (incremental decode)",
            },
            "ort_timing": "perf_counter around run_with_iobinding (ORT syncs its stream per run)",
        }
        return Verdict(reasons, evidence)


def requested_providers(device: str) -> list[str]:
    """Providers to ask for, best first: $KIT_ORT_PROVIDERS (comma list, e.g.
    `TensorrtExecutionProvider,CUDAExecutionProvider`) or the device's own; CPU always last."""
    override = [p.strip() for p in os.environ.get("KIT_ORT_PROVIDERS", "").split(",") if p.strip()]
    wanted = override or [PROVIDER_FOR_DEVICE.get(device, "CPUExecutionProvider")]
    if "CPUExecutionProvider" not in wanted:
        wanted.append("CPUExecutionProvider")
    return wanted
