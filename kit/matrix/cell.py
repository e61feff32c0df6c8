"""The cell: one measured unit (a frozen record with a stable id)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any

from kit.matrix.backends import backend_ids

# The cell fields `kit run` may override (--device, --reps, --warmup, --max-new-tokens,
# --until-ci, --max-reps): an overridden cell is another cell (its id hashes them) that stands
# for the same matrix cell.
RUN_OVERRIDES = ("device", "repetitions", "warmup", "max_new_tokens", "until_ci_pct", "max_reps")


def matrix_key(fields: dict[str, Any]) -> str:
    """A cell's fields without its id and `kit run`'s overrides, as one string: the cells run
    from one matrix cell with other overrides (`--reps 3`, `--device cpu`) share it."""
    skip = ("id", *RUN_OVERRIDES)
    return json.dumps({k: v for k, v in fields.items() if k not in skip}, sort_keys=True,
                      default=str)  # fmt: skip


BACKENDS = backend_ids()  # builtin/backends.yaml: the backends as data
DEVICES = ("cpu", "cuda")
MODES = ("prefill", "kv_decode", "e2e_kv", "generate")
DTYPES = ("fp32", "fp16", "bf16")
QUANTIZATIONS = ("fp32", "fp16", "int8")
CACHES = ("dynamic", "static")

# The fields that make a cell group: cells sharing them share one process (one model load,
# one compilation, one fresh compiler cache).
GROUP_FIELDS = (
    "matrix",
    "group",
    "backend",
    "device",
    "model",
    "dtype",
    "quantization",
    "compile",
    "cache",
    "cudagraphs",
)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One cell of a matrix, fully resolved. See docs/FORMATS.md for each field."""

    matrix: str
    group: str
    backend: str
    backend_label: str
    device: str
    model: str
    dtype: str
    quantization: str | None
    scenario: str
    prompt_index: int
    batch_size: int
    concurrency: int
    mode: str
    repetitions: int
    warmup: int
    max_new_tokens: int
    token_len: int | None
    compile: dict[str, Any] | None
    cache: str
    pad_to_multiple: int | None
    cudagraphs: bool
    sampling: dict[str, Any]
    seed: int
    extension: bool = False
    # "continue": a failing call is an `error` sample and the cell goes on (TR147 v4A). Left
    # out of fields() (and so of the id) when "stop", so that older cells keep their ids.
    on_error: str = "stop"
    # StaticCache per call: "fresh" (a new one in each call's setup) or "reuse" (one per
    # batch and length in the process, reset in each call's setup, as transformers' generate
    # keeps one for torch.compile: its tensors are marked static addresses, which CUDA
    # graphs record once). Left out of fields() and the group key when "fresh".
    static_cache: str = "fresh"
    # Adaptive repetitions (kit run --until-ci PCT --max-reps N): keep measuring past
    # `repetitions` until the median's 95% CI half-width is under PCT percent of the median,
    # up to `max_reps` timed calls. Left out of fields() when unset.
    until_ci_pct: float | None = None
    max_reps: int | None = None

    @functools.cached_property
    def id(self) -> str:
        return cell_id(self.fields())

    def fields(self) -> dict[str, Any]:
        """Every field except the id, as plain JSON-able values."""
        fields = dataclasses.asdict(self)
        if fields["on_error"] == "stop":
            del fields["on_error"]
        if fields["static_cache"] == "fresh":
            del fields["static_cache"]
        for key in ("until_ci_pct", "max_reps"):
            if fields[key] is None:
                del fields[key]
        return fields

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.fields()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        """Rebuild a cell (e.g. from matrix/cells.json); the id must match its fields."""
        names = {f.name for f in dataclasses.fields(cls)}
        cell = cls(**{k: v for k, v in data.items() if k in names})
        if "id" in data and data["id"] != cell.id:
            raise ValueError(f"cell id {data['id']} does not match its fields (expected {cell.id})")
        return cell

    def replace(self, **changes: Any) -> Cell:
        return dataclasses.replace(self, **changes)

    def group_key(self) -> dict[str, Any]:
        key = {name: getattr(self, name) for name in GROUP_FIELDS}
        if self.static_cache != "fresh":  # one process holds one way of handling the cache
            key["static_cache"] = self.static_cache
        return key

    def group_id(self) -> str:
        """A short filesystem-safe id of the cell's group."""
        digest = hashlib.sha256(canonical_json(self.group_key()).encode()).hexdigest()[:10]
        safe_model = self.model.replace(":", "-").replace("/", "-")
        return f"{self.group}.{self.backend}.{self.device}.{safe_model}.{self.dtype}.{digest}"

    def flat(self) -> dict[str, Any]:
        """Fields flattened for selection: nested dicts become dotted keys."""
        out: dict[str, Any] = {"id": self.id}
        for key, value in self.fields().items():
            if isinstance(value, dict):
                for sub, subvalue in value.items():
                    out[f"{key}.{sub}"] = subvalue
            out[key] = value
        return out


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def cell_id(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()[:16]
