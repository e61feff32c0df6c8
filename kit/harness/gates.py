"""TR126's phase-1 gate, run where the backend lives: `python -m kit.harness.gates --input F`.

Checks (from the matrix's `gates:` data): CUDA available, Triton version, Inductor compiles
with no graph break, running in a container, and weight parity (eager vs torch.compile:
the same greedy tokens, logits within the dtype's tolerance). Each check prints one JSON
event `gate_check` {gate, check, passed, value, expected, detail}; a check that cannot run
fails with the reason, never passes by default.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from kit.harness.events import Emitter

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_cuda(_check: dict[str, Any], _spec: dict[str, Any]) -> tuple[bool, Any, str, str]:
    import torch

    ok = bool(torch.cuda.is_available())
    name = torch.cuda.get_device_name(0) if ok else ""
    return ok, ok, "true", name or "torch.cuda.is_available() is False in this process"


def check_triton(check: dict[str, Any], _spec: dict[str, Any]) -> tuple[bool, Any, str, str]:
    minimum = str(check.get("min", "3.0"))
    try:
        import triton
    except ImportError:
        return (
            False,
            None,
            f">= {minimum}",
            "triton is not installed (torch.compile on CUDA needs it)",
        )
    version = str(triton.__version__)
    return _version_tuple(version) >= _version_tuple(minimum), version, f">= {minimum}", ""


def check_container(_check: dict[str, Any], _spec: dict[str, Any]) -> tuple[bool, Any, str, str]:
    """Inside one of the kit's own images (its fingerprint file), not merely "a container"."""
    from kit.env.image_proof import kit_image_proof

    proof = kit_image_proof()
    return proof.in_kit_image, proof.image or False, "a kit image", proof.detail


def _load(spec: dict[str, Any], dtype: str, device: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(
        spec["model_dir"], dtype=getattr(torch, DTYPES[dtype])
    )
    return model.to(device).eval()


def check_graph_breaks(check: dict[str, Any], spec: dict[str, Any]) -> tuple[bool, Any, str, str]:
    import torch
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = _load(spec, "fp32", spec["device"])
    ids = torch.tensor([spec["prompts"][0]], device=spec["device"])
    compiled = torch.compile(model.forward, backend="inductor")
    with torch.no_grad():
        compiled(input_ids=ids, use_cache=True)
    breaks = int(sum(counters["graph_break"].values()))
    graphs = int(counters["stats"]["unique_graphs"])
    limit = int(check.get("max", 0))
    detail = f"{graphs} graph(s) compiled" + (
        f"; reasons: {list(counters['graph_break'])[:3]}" if breaks else ""
    )
    return breaks <= limit and graphs > 0, breaks, f"<= {limit}", detail


def check_parity(check: dict[str, Any], spec: dict[str, Any]) -> tuple[bool, Any, str, str]:
    import torch

    dtype = str(check.get("dtype", "fp32"))
    tolerance = float((check.get("tolerance") or {}).get(dtype, 1e-4))
    steps = int(check.get("max_new_tokens", 32))
    device = spec["device"]
    torch.manual_seed(int(check.get("seed", 42)))
    model = _load(spec, dtype, device)
    pad = int(model.config.eos_token_id or 0)

    def greedy(forward_model: Any, ids: list[int]) -> tuple[list[int], list[Any]]:
        x = torch.tensor([ids], device=device)
        out = forward_model.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=steps,
            min_new_tokens=steps,
            do_sample=False,
            pad_token_id=pad,
            output_logits=True,
            return_dict_in_generate=True,
        )
        return out.sequences[0, len(ids) :].tolist(), [t.float() for t in out.logits]

    with torch.no_grad():
        eager = [greedy(model, ids) for ids in spec["prompts"]]
        torch._dynamo.reset()
        model.forward = torch.compile(model.forward, backend="inductor")
        compiled = [greedy(model, ids) for ids in spec["prompts"]]
    worst = 0.0
    mismatched = 0
    for (tok_e, log_e), (tok_c, log_c) in zip(eager, compiled, strict=True):
        if tok_e != tok_c:
            mismatched += 1
        agree = next(
            (i for i, (a, b) in enumerate(zip(tok_e, tok_c, strict=True)) if a != b), len(tok_e)
        )
        for a, b in zip(log_e[: agree + 1], log_c[: agree + 1], strict=False):
            worst = max(worst, float((a - b).abs().max()))
    ok = mismatched == 0 and worst <= tolerance
    detail = f"{len(eager)} prompts x {steps} greedy tokens; {mismatched} token sequences differ; max |logit diff| {worst:.3g}"
    return ok, worst, f"<= {tolerance:g} and identical tokens", detail


CHECKS = {
    "cuda_available": check_cuda,
    "triton_version": check_triton,
    "in_container": check_container,
    "inductor_graph_breaks": check_graph_breaks,
    "weight_parity": check_parity,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit.harness.gates")
    parser.add_argument("--input", required=True, type=Path)
    args = parser.parse_args(argv)
    out = Emitter.take_stdout()
    spec = json.loads(args.input.read_text())
    if spec.get("compile_cache_dir"):
        os.environ.setdefault(
            "TORCHINDUCTOR_CACHE_DIR", str(Path(spec["compile_cache_dir"]) / "inductor")
        )
    for gate in spec["gates"]:
        for check in gate.get("checks", []):
            name = str(check.get("check"))
            fn = CHECKS.get(name)
            try:
                if fn is None:
                    raise ValueError(f"unknown check {name!r}; known: {', '.join(CHECKS)}")
                passed, value, expected, detail = fn(check, spec)
            except Exception as err:
                out.log(traceback.format_exc(), level="error")
                passed, value, expected, detail = (
                    False,
                    None,
                    "",
                    f"could not run: {type(err).__name__}: {err}",
                )
            out.emit(
                "gate_check",
                gate=gate.get("id"),
                check=name,
                passed=bool(passed),
                value=value,
                expected=expected,
                detail=detail,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
