"""Backends as data: which backends exist, what each needs, whether it is implemented.

Loaded from `builtin/backends.yaml` (validated: a bad file names the field and what is valid).
The orchestrator side (UI, host runner, image registry) reads backends here and never reaches
into `kit.harness`; the harness keeps only the module that measures each implemented backend.
No side effects, no ML imports.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import yaml

from kit.errors import KitError

BUILTIN_BACKENDS = Path(__file__).resolve().parent / "builtin" / "backends.yaml"
_KEYS = {"id", "implemented", "description", "needs"}
_NEEDS = {"python_modules", "image", "interpreter", "server", "artifact"}


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    id: str
    implemented: bool
    description: str = ""
    python_modules: tuple[str, ...] = ()
    image: str | None = None  # kit/images/registry.py image name
    interpreter_env: str | None = None  # e.g. KIT_VLLM_PYTHON
    interpreter_venv: str | None = None  # e.g. .venv-vllm, relative to the checkout
    server: str | None = None  # e.g. ollama: a server beside the measuring process
    artifact: str | None = None  # e.g. gguf, onnx: a converted model, exported on demand

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _fail(path: Path, where: str, problem: str, valid: str) -> KitError:
    return KitError(f"{path}: {where}: {problem}", f"valid: {valid}")


def _check(path: Path, index: int, raw: Any) -> BackendSpec:
    where = f"backends[{index}]"
    if not isinstance(raw, dict):
        raise _fail(path, where, f"expected a mapping, got {raw!r}", "id, implemented, needs")
    for key in raw:
        if key not in _KEYS:
            raise _fail(path, f"{where}.{key}", "unknown key", ", ".join(sorted(_KEYS)))
    if not isinstance(raw.get("id"), str) or not raw["id"]:
        raise _fail(path, f"{where}.id", f"bad value {raw.get('id')!r}", "a backend id")
    where = f"backends[{index}] ({raw['id']})"
    if not isinstance(raw.get("implemented"), bool):
        raise _fail(path, f"{where}.implemented", f"bad value {raw.get('implemented')!r}", "bool")
    needs = raw.get("needs") or {}
    if not isinstance(needs, dict) or set(needs) - _NEEDS:
        raise _fail(path, f"{where}.needs", f"bad value {needs!r}", ", ".join(sorted(_NEEDS)))
    modules = needs.get("python_modules") or []
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise _fail(path, f"{where}.needs.python_modules", f"bad value {modules!r}", "names")
    interpreter = needs.get("interpreter") or {}
    if not isinstance(interpreter, dict) or set(interpreter) - {"env", "venv"}:
        raise _fail(path, f"{where}.needs.interpreter", f"bad value {interpreter!r}", "env, venv")
    for key in ("image", "server", "artifact"):
        if needs.get(key) is not None and not isinstance(needs[key], str):
            raise _fail(path, f"{where}.needs.{key}", f"bad value {needs[key]!r}", "a name")
    return BackendSpec(
        id=raw["id"],
        implemented=raw["implemented"],
        description=str(raw.get("description", "")),
        python_modules=tuple(modules),
        image=needs.get("image"),
        interpreter_env=interpreter.get("env"),
        interpreter_venv=interpreter.get("venv"),
        server=needs.get("server"),
        artifact=needs.get("artifact"),
    )


def load_backends(path: Path) -> dict[str, BackendSpec]:
    """Read and validate a backends file. Raises KitError naming the file and field."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise KitError(f"cannot read {path}: {err}", "check the file") from err
    if not isinstance(doc, dict) or doc.get("schema") != 1:
        raise _fail(path, "schema", "expected schema: 1", "1")
    entries = doc.get("backends")
    if not isinstance(entries, list) or not entries:
        raise _fail(path, "backends", "expected a non-empty list", "a list of backends")
    found: dict[str, BackendSpec] = {}
    for index, raw in enumerate(entries):
        spec = _check(path, index, raw)
        if spec.id in found:
            raise _fail(path, f"backends[{index}].id", f"duplicate id {spec.id!r}", "unique ids")
        found[spec.id] = spec
    return found


@functools.lru_cache(maxsize=1)
def _builtin() -> dict[str, BackendSpec]:
    return load_backends(BUILTIN_BACKENDS)


def backends() -> dict[str, BackendSpec]:
    """Every backend of the built-in file, by id, in file order (a new dict per call)."""
    return dict(_builtin())


def backend_spec(backend_id: str) -> BackendSpec:
    """The entry for `backend_id`; KitError naming the known ids otherwise."""
    known = _builtin()
    if backend_id not in known:
        raise KitError(f"unknown backend {backend_id!r}", f"known backends: {', '.join(known)}")
    return known[backend_id]


def backend_ids() -> tuple[str, ...]:
    return tuple(_builtin())
