"""The TensorRT backend's plain logic: the shapes a group will run, the optimization profile
built from them, the engine's cache key, and TR118's trap (a shape outside the profile).

No tensorrt import here: all of it is tested on CPU. An engine is built for ONE profile per
dynamic input (min/opt/max), taken from the group's real prompt lengths: batch B, new tokens S
and past length P of the exported graph (kit/harness/backends/onnx_export.py: `input_ids
[B,S]`, `attention_mask [B,P+S]`, `position_ids [B,S]`, `past.<i>.key|value [B,H,P,D]`).
A shape outside the engine's profile makes TensorRT fail at run time, or (TR118) the old
harness fell back to placeholders; here it is found before the first timed call and the cell is
`degraded`, naming the shape and the profile.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import statistics
from collections.abc import Iterable
from typing import Any

from kit.harness.backends.base import left_pad

PLAN_VERSION = 1  # bump when the engine build recipe changes: old cached engines stop matching
PROFILE_ENV = "KIT_TRT_PROFILE"  # e.g. "batch=1:1:4,seq=1:16:64,past=0:16:128" (fixed engine)


@dataclasses.dataclass(frozen=True, order=True)
class Shape:
    """One run of the graph: batch, new tokens, past length."""

    batch: int
    seq: int
    past: int

    def text(self) -> str:
        return f"batch {self.batch}, seq {self.seq}, past {self.past}"


@dataclasses.dataclass(frozen=True)
class Dim:
    min: int
    opt: int
    max: int

    def holds(self, value: int) -> bool:
        return self.min <= value <= self.max

    def text(self) -> str:
        return f"{self.min}..{self.max} (opt {self.opt})"


@dataclasses.dataclass(frozen=True)
class Profile:
    batch: Dim
    seq: Dim
    past: Dim
    source: str  # "cells" (from the group's prompts) or the KIT_TRT_PROFILE text

    def outside(self, shape: Shape) -> str | None:
        """Which dimension of `shape` the profile does not hold, in words; None if it fits."""
        bad = [
            f"{name} {value} not in {dim.text()}"
            for name, value, dim in (
                ("batch", shape.batch, self.batch),
                ("seq", shape.seq, self.seq),
                ("past", shape.past, self.past),
            )
            if not dim.holds(value)
        ]
        return "; ".join(bad) or None

    def text(self) -> str:
        return f"batch {self.batch.text()}, seq {self.seq.text()}, past {self.past.text()}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def input_shapes(
        self, layers: int, heads: int, head_dim: int
    ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """(min, opt, max) shape per graph input, for `IOptimizationProfile.set_shape`."""
        b, s, p = self.batch, self.seq, self.past

        def trio(*dims: tuple[int, int, int]) -> tuple[tuple[int, ...], ...]:
            return tuple(tuple(d[i] for d in dims) for i in range(3))

        bb, ss, pp = (b.min, b.opt, b.max), (s.min, s.opt, s.max), (p.min, p.opt, p.max)
        total = (p.min + s.min, p.opt + s.opt, p.max + s.max)
        shapes: dict[str, Any] = {
            "input_ids": trio(bb, ss),
            "position_ids": trio(bb, ss),
            "attention_mask": trio(bb, total),
        }
        fixed = ((heads,) * 3, (head_dim,) * 3)
        for i in range(layers):
            for kv in ("key", "value"):
                shapes[f"past.{i}.{kv}"] = trio(bb, fixed[0], pp, fixed[1])  # type: ignore[arg-type]
        return shapes


def cell_shapes(cell: dict[str, Any], prompt_ids: list[list[int]]) -> list[Shape]:
    """Every graph shape the cell's mode runs, as the ORT-style loop runs them: one prefill
    [B,S] with past 0, then one-token steps whose past grows from S."""
    rows, _ = left_pad(prompt_ids, cell.get("pad_to_multiple"), 0)
    batch, length = len(rows), len(rows[0])
    n_new = int(cell.get("max_new_tokens") or 0)
    prefill = Shape(batch, length, 0)
    mode = cell["mode"]
    if mode == "prefill" or n_new <= 0:
        return [prefill]
    steps = n_new if mode == "kv_decode" else n_new - 1
    if steps <= 0:
        return [prefill]
    return [prefill, Shape(batch, 1, length), Shape(batch, 1, length + steps - 1)]


def profile_from_shapes(shapes: Iterable[Shape], max_positions: int | None = None) -> Profile:
    """min/opt/max over the shapes; opt: the median prefill length and the most common batch.

    `max_positions` (the model's context, e.g. GPT-2's 1024) caps past + seq: a shape beyond
    the model's context cannot be in any engine, so the trap reports it instead.
    """
    found = sorted(set(shapes))
    if not found:
        raise ValueError("no shapes to build a profile from")
    batches = [s.batch for s in found]
    prefill = [s.seq for s in found if s.past == 0] or [s.seq for s in found]
    pasts = [s.past for s in found]
    opt_seq = int(statistics.median_low(prefill))
    seq = Dim(min(s.seq for s in found), opt_seq, max(s.seq for s in found))
    past_max = max(pasts)
    if max_positions is not None:
        seq = Dim(seq.min, min(seq.opt, max_positions), min(seq.max, max_positions))
        past_max = min(past_max, max_positions - seq.min)
    past = Dim(min(pasts), min(max(opt_seq, min(pasts)), past_max), past_max)
    batch = Dim(min(batches), statistics.mode(batches), max(batches))
    return Profile(batch, seq, past, "cells")


def parse_profile(text: str) -> Profile:
    """KIT_TRT_PROFILE's form: `batch=1:1:4,seq=1:16:64,past=0:16:128` (min:opt:max)."""
    dims: dict[str, Dim] = {}
    for part in text.split(","):
        name, _, value = part.strip().partition("=")
        try:
            low, opt, high = (int(v) for v in value.split(":"))
        except ValueError:
            raise ValueError(f"{PROFILE_ENV}: {part!r} is not NAME=MIN:OPT:MAX") from None
        if not low <= opt <= high:
            raise ValueError(f"{PROFILE_ENV}: {part!r} needs MIN <= OPT <= MAX")
        dims[name.strip()] = Dim(low, opt, high)
    missing = {"batch", "seq", "past"} - set(dims)
    if missing:
        raise ValueError(f"{PROFILE_ENV}: missing {', '.join(sorted(missing))}")
    return Profile(dims["batch"], dims["seq"], dims["past"], text)


def group_profile(
    cells: list[dict[str, Any]], prompts: dict[str, list[list[int]]], max_positions: int | None
) -> Profile:
    """The profile the group's engine is built with: KIT_TRT_PROFILE when set (a fixed engine,
    TR118's setting), else computed over every cell's real prompt lengths."""
    fixed = os.environ.get(PROFILE_ENV)
    if fixed:
        return parse_profile(fixed)
    shapes = [s for cell in cells for s in cell_shapes(cell, prompts[cell["id"]])]
    return profile_from_shapes(shapes, max_positions)


def trap(cell: dict[str, Any], prompt_ids: list[list[int]], profile: Profile) -> str | None:
    """TR118's trap, checked before timing: the first shape of the cell outside the profile,
    in one sentence naming the shape and the profile; None when every shape fits."""
    for shape in cell_shapes(cell, prompt_ids):
        why = profile.outside(shape)
        if why:
            return (
                f"shape outside the TensorRT profile: {shape.text()} ({why}); the engine's "
                f"profile is {profile.text()} [{profile.source}]; no latency was recorded"
            )
    return None


def engine_key(
    onnx_sha256: dict[str, str],
    profile: Profile,
    dtype: str,
    tensorrt_version: str,
    device: str,
    flags: dict[str, Any] | None = None,
) -> str:
    """The engine's content hash: everything that changes the built plan. `device` names the
    GPU (an engine is specific to its compute capability and TensorRT version)."""
    payload = {
        "plan_version": PLAN_VERSION,
        "onnx": dict(sorted(onnx_sha256.items())),
        "profile": {k: v for k, v in profile.to_json().items() if k != "source"},
        "dtype": dtype,
        "tensorrt": tensorrt_version,
        "device": device,
        "flags": flags or {},
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:32]
