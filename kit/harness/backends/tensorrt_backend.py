"""TensorRT (TR117's engine path): the kit's ONNX export (with its KV cache) built into an
engine with ONE explicit optimization profile over the group's real shapes, then run like the
onnxruntime backend (prefill, then one-token steps feeding `present` back as `past`).

Phases: `export` (or its cache hit), `engine_build` (build time and engine size; or the cache
hit: the engine is cached by content hash, tensorrt_plan.engine_key) and `engine_load`. Before a
cell is timed, every shape it will run is checked against the engine's profile (TR118's trap):
a shape outside it makes the cell `degraded` with the shape and the profile, and no sample.

NOT RUN YET: no engine has been built or timed by this code (no GPU on the development
machine, and TensorRT's wheels are not installed on the GPU host). The plan logic it relies on
(tensorrt_plan) is tested on CPU; this file is the GPU path, to be validated on a GPU.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kit.harness.backends.base import Call, Verdict, left_pad
from kit.harness.backends.onnx_export import (
    Exported,
    cached_export,
    export_root,
    kv_names,
    kv_shape,
)
from kit.harness.backends.tensorrt_plan import Profile, engine_key, group_profile, trap
from kit.harness.timing import Timer

PARITY_TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2}  # TensorRT's fp32 uses TF32 unless disabled
ENGINE_NAME = "engine.plan"


class TensorRTBackend:
    compiles = False

    def __init__(self, spec: dict[str, Any]) -> None:
        import tensorrt as trt
        import torch

        self.trt, self.torch, self.spec = trt, torch, spec
        first = spec["cells"][0]
        self.device = first["device"]
        self.dtype_name = first["dtype"]
        self.timer = Timer(torch, "cuda")
        self.phases: list[dict[str, Any]] = []
        self.exported: Exported | None = None
        self.profile: Profile | None = None
        self.engine: Any = None
        self.context: Any = None
        self.torch_model: Any = None
        self.kv: tuple[int, int, int] = (0, 0, 0)
        self.pad_id = 0
        self.engine_facts: dict[str, Any] = {}
        self.parity: dict[str, dict[str, Any]] = {}

    # -- group level ------------------------------------------------------------------------
    def unavailable(self) -> str | None:
        if self.device != "cuda":
            return "backend tensorrt runs on CUDA only"
        if not self.torch.cuda.is_available():
            return "backend tensorrt needs a CUDA GPU; none is visible to this process"
        if self.dtype_name not in PARITY_TOLERANCE:
            return f"dtype {self.dtype_name} is not supported by the tensorrt backend (fp32, fp16)"
        return None

    def _phase(self, name: str, t0: int, t1: int, detail: dict[str, Any]) -> None:
        self.phases.append(
            {"phase": name, "cell": None, "t0_ns": t0, "t1_ns": t1, "ms": (t1 - t0) / 1e6,
             "detail": detail}
        )  # fmt: skip

    def load(self) -> dict[str, Any]:
        from transformers import AutoModelForCausalLM

        torch = self.torch
        torch.set_grad_enabled(False)
        dtype = torch.float16 if self.dtype_name == "fp16" else torch.float32
        self.torch_model = AutoModelForCausalLM.from_pretrained(
            self.spec["model_dir"], dtype=dtype, attn_implementation="eager"
        ).eval()
        cfg = self.torch_model.config
        self.kv = kv_shape(cfg)
        self.pad_id = int(cfg.eos_token_id if cfg.eos_token_id is not None else 0)
        t0 = time.monotonic_ns()
        model = self.torch_model
        self.exported = cached_export(Path(self.spec["model_dir"]), self.dtype_name, lambda: model)
        self._phase("export", t0, time.monotonic_ns(), {"key": self.exported.key,
                                                        "reused": self.exported.reused})  # fmt: skip
        positions = getattr(cfg, "n_positions", None) or getattr(
            cfg, "max_position_embeddings", None
        )
        self.profile = group_profile(self.spec["cells"], self.spec["prompts"], positions)
        self.engine = self._cached_engine()
        self.context = self.engine.create_execution_context()
        self.torch_model.to("cuda")  # the parity reference runs on the same device
        return {"tensorrt": self.trt.__version__, "profile": self.profile.to_json(),
                **self.engine_facts}  # fmt: skip

    def _cached_engine(self) -> Any:
        trt = self.trt
        assert self.exported is not None and self.profile is not None
        props = self.torch.cuda.get_device_properties(0)
        device = f"{props.name} sm_{props.major}{props.minor}"
        key = engine_key(
            self.exported.files_sha256, self.profile, self.dtype_name, trt.__version__, device
        )
        folder = export_root().parent / "tensorrt" / key
        path = folder / ENGINE_NAME
        t0 = time.monotonic_ns()
        reused = path.is_file()
        if not reused:
            plan = self._build(self.exported.path)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(plan)
            tmp.rename(path)
            (folder / "profile.json").write_text(json.dumps(self.profile.to_json(), indent=1))
        t1 = time.monotonic_ns()
        self.engine_facts = {"engine_key": key, "engine_reused": reused,
                             "engine_bytes": path.stat().st_size, "engine_path": str(path),
                             "device": device}  # fmt: skip
        self._phase("engine_build", t0, t1, {**self.engine_facts, "profile": self.profile.text()})
        t0 = time.monotonic_ns()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        self._phase("engine_load", t0, time.monotonic_ns(), {"engine_key": key})
        if engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {path}")
        return engine

    def _build(self, onnx_path: Path) -> bytes:
        trt = self.trt
        assert self.profile is not None
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse the ONNX export: {errors}")
        config = builder.create_builder_config()
        if self.dtype_name == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        else:
            config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32 (parity tolerance 1e-3)
        profile = builder.create_optimization_profile()
        for name, (low, opt, high) in self.profile.input_shapes(*self.kv).items():
            profile.set_shape(name, low, opt, high)
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError("TensorRT's builder returned no engine (see its log above)")
        return bytes(plan)

    def is_fatal(self, error: BaseException) -> bool:
        text = str(error)
        return "illegal memory access" in text or "CUDA error" in text

    # -- cell level -------------------------------------------------------------------------
    def precheck(self, cell: dict[str, Any], prompt_ids: list[list[int]]) -> list[str]:
        """TR118's trap, before any timed call: reasons make the cell degraded, unmeasured."""
        assert self.profile is not None
        found = trap(cell, prompt_ids, self.profile)
        return [found] if found else []

    def skip_reason(self, cell: dict[str, Any]) -> str | None:
        if cell.get("quantization") == "int8":
            return "int8 (a TR117 label) needs a calibrated TensorRT engine, not built by the kit"
        if cell.get("cache") == "static":
            return "the tensorrt backend has a dynamic KV cache only (cache: static asked)"
        return None

    def compile_counters(self) -> dict[str, Any]:
        return {}

    def _run(self, ids: Any, mask: Any, positions: Any, past: list[Any] | None) -> list[Any]:
        torch, ctx = self.torch, self.context
        layers, heads, dim = self.kv
        past_names, present_names = kv_names(layers)
        batch = ids.shape[0]
        if past is None:
            dtype = torch.float16 if self.dtype_name == "fp16" else torch.float32
            past = [torch.zeros(batch, heads, 0, dim, dtype=dtype, device="cuda")] * len(past_names)
        inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                  **dict(zip(past_names, past, strict=True))}  # fmt: skip
        for name, tensor in inputs.items():
            ctx.set_input_shape(name, tuple(tensor.shape))
            ctx.set_tensor_address(name, tensor.data_ptr())
        outputs = []
        dtype = torch.float16 if self.dtype_name == "fp16" else torch.float32  # as exported
        for name in ["logits", *present_names]:
            out = torch.empty(tuple(ctx.get_tensor_shape(name)), dtype=dtype, device="cuda")
            ctx.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        if not ctx.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        return outputs

    def _inputs(self, prompt_ids: list[list[int]], pad_to: int | None) -> tuple[Any, Any, Any]:
        torch = self.torch
        rows, masks = left_pad(prompt_ids, pad_to, self.pad_id)
        mask = torch.tensor(masks, dtype=torch.int64, device="cuda")
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return torch.tensor(rows, dtype=torch.int64, device="cuda"), mask, positions

    def call(self, cell: dict[str, Any], prompt_ids: list[list[int]], rep: int) -> Call:
        torch = self.torch
        if cell["id"] not in self.parity:
            self.parity[cell["id"]] = self.check_parity(cell, prompt_ids)
        ids, mask, positions = self._inputs(prompt_ids, cell.get("pad_to_multiple"))
        batch, n_new = ids.shape[0], int(cell["max_new_tokens"])

        def prefill() -> tuple[list[Any], Any, Any]:
            outs = self._run(ids, mask, positions, None)
            return outs[1:], outs[0][:, -1, :].argmax(-1, keepdim=True), mask

        def decode(state: tuple[list[Any], Any, Any], steps: int) -> int:
            past, token, step_mask = state
            ones = torch.ones(batch, 1, dtype=torch.int64, device="cuda")
            for i in range(steps):
                step_mask = torch.cat([step_mask, ones], dim=-1)
                outs = self._run(token, step_mask, positions[:, -1:] + 1 + i, past)
                past, token = outs[1:], outs[0][:, -1, :].argmax(-1, keepdim=True)
            return steps

        mode = cell["mode"]
        if mode == "prefill":
            return Call(lambda: None, lambda _s: prefill(), lambda _r: [1] * batch)
        if mode == "kv_decode":
            return Call(prefill, lambda st: decode(st, n_new), lambda r: [int(r)] * batch)
        if mode in ("e2e_kv", "generate"):  # greedy: sampled generate is not offered here
            return Call(lambda: None, lambda _s: 1 + decode(prefill(), n_new - 1),
                        lambda r: [int(r)] * batch)  # fmt: skip
        raise ValueError(f"unknown mode {mode!r}")

    def check_parity(self, cell: dict[str, Any], prompt_ids: list[list[int]]) -> dict[str, Any]:
        ids, mask, positions = self._inputs(prompt_ids, cell.get("pad_to_multiple"))
        tolerance = PARITY_TOLERANCE[self.dtype_name]
        try:
            ours = self._run(ids, mask, positions, None)[0][:, -1, :].float()
            ref = self.torch_model(input_ids=ids, attention_mask=mask, position_ids=positions)
            diff = float((ours - ref.logits[:, -1, :].float()).abs().max())
        except Exception as err:
            return {
                "ok": False,
                "error": f"{type(err).__name__}: {err}"[:500],
                "tolerance": tolerance,
            }
        return {"ok": diff <= tolerance, "max_abs_diff": diff, "tolerance": tolerance}

    def verdict(self, cell: dict[str, Any], compile_delta: dict[str, Any]) -> Verdict:
        assert self.profile is not None
        reasons = []
        parity = self.parity.get(cell["id"], {})
        if not parity.get("ok"):
            reasons.append(f"parity with PyTorch failed before timing: {parity}")
        evidence = {"tensorrt": self.trt.__version__, "profile": self.profile.to_json(),
                    "parity": parity, **self.engine_facts}  # fmt: skip
        return Verdict(reasons, evidence)
