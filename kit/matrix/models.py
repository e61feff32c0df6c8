"""The model registry: every model the matrices use, loaded from `builtin/models.yaml`.

Data, not code: the YAML names the source of each value. This module only reads and
validates it (a bad file fails with the field path and what would be valid) and merges each
family's default config under the model's own fields. No side effects, no ML imports.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kit.errors import KitError

BUILTIN_MODELS = Path(__file__).resolve().parent / "builtin" / "models.yaml"

FAMILIES = ("gpt2", "qwen2", "ollama")
TOKENIZERS = ("gpt2", "qwen2")

_MODEL_KEYS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "family": str,
    "hub_id": (str, type(None)),
    "revision": (str, type(None)),
    "config": dict,
    "params": (int, type(None)),
    "role": str,
    "source": str,
    "tokenizer": (str, type(None)),
    "ollama_tag": (str, type(None)),
    "notes": str,
}
_REQUIRED = ("id", "family", "role", "source")
# Config fields a family needs before a checkpoint can be synthesized or a depth plotted.
_REQUIRED_CONFIG = {
    "gpt2": ("n_embd", "n_layer", "n_head", "vocab_size", "n_positions"),
    "qwen2": (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
        "vocab_size",
    ),
    "ollama": ("n_layer",),
}


@dataclass(frozen=True)
class ModelSpec:
    """One model of the registry. `config` is the merged Hugging Face config (family defaults
    under the model's own fields); for Ollama tags it only carries `n_layer`."""

    id: str
    family: str
    role: str
    source: str
    config: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)
    hub_id: str | None = None
    revision: str | None = None
    params: int | None = None
    tokenizer: str | None = None
    ollama_tag: str | None = None
    notes: str = ""

    @property
    def is_ollama(self) -> bool:
        return self.family == "ollama"

    @property
    def n_layer(self) -> int:
        """Depth (transformer blocks), whatever the family calls it."""
        key = "num_hidden_layers" if self.family == "qwen2" else "n_layer"
        return int(self.config[key])

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "family": self.family,
            "hub_id": self.hub_id,
            "revision": self.revision,
            "ollama_tag": self.ollama_tag,
            "tokenizer": self.tokenizer,
            "params": self.params,
            "n_layer": self.n_layer,
            "role": self.role,
            "source": self.source,
            "notes": self.notes,
            "config": copy.deepcopy(self.config),
        }


def _fail(path: Path, where: str, problem: str, valid: str) -> KitError:
    return KitError(f"{path}: {where}: {problem}", f"valid: {valid}")


def _type_name(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def _check_model(path: Path, index: int, raw: Any, families: dict[str, Any]) -> ModelSpec:
    where = f"models[{index}]"
    if not isinstance(raw, dict):
        raise _fail(path, where, f"expected a mapping, got {raw!r}", "a mapping of model fields")
    if isinstance(raw.get("id"), str):
        where = f"models[{index}] ({raw['id']})"
    for key, value in raw.items():
        if key not in _MODEL_KEYS:
            raise _fail(path, f"{where}.{key}", "unknown key", ", ".join(sorted(_MODEL_KEYS)))
        expected = _MODEL_KEYS[key]
        # bool is an int subclass; a `params: true` is a typo, not a count.
        if isinstance(value, bool) or not isinstance(value, expected):
            raise _fail(path, f"{where}.{key}", f"bad value {value!r}", _type_name(expected))
    for key in _REQUIRED:
        if key not in raw:
            raise _fail(path, where, f"missing key {key!r}", f"required: {', '.join(_REQUIRED)}")
    family = raw["family"]
    if family not in FAMILIES:
        raise _fail(path, f"{where}.family", f"bad value {family!r}", ", ".join(FAMILIES))
    tokenizer = raw.get("tokenizer")
    if tokenizer is not None and tokenizer not in TOKENIZERS:
        raise _fail(path, f"{where}.tokenizer", f"bad value {tokenizer!r}", ", ".join(TOKENIZERS))
    if family == "ollama":
        if not raw.get("ollama_tag"):
            raise _fail(path, where, "an ollama model needs ollama_tag", "the Ollama tag")
    elif not raw.get("hub_id"):
        raise _fail(path, where, f"a {family} model needs hub_id", "owner/name on the HF hub")
    config = copy.deepcopy(families.get(family, {}).get("defaults") or {})
    config.update(raw.get("config") or {})
    for key in _REQUIRED_CONFIG[family]:
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise _fail(
                path, f"{where}.config.{key}", f"missing or bad value {value!r}", "a positive int"
            )
    params = raw.get("params")
    if params is not None and params <= 0:
        raise _fail(path, f"{where}.params", f"bad value {params!r}", "a positive int or null")
    return ModelSpec(
        id=raw["id"],
        family=family,
        role=raw["role"],
        source=raw["source"],
        config=config,
        hub_id=raw.get("hub_id"),
        revision=raw.get("revision"),
        params=params,
        tokenizer=tokenizer,
        ollama_tag=raw.get("ollama_tag"),
        notes=" ".join(str(raw.get("notes", "")).split()),
    )


def load_models(path: Path) -> dict[str, ModelSpec]:
    """Read and validate a models file. Raises KitError naming the file and field path."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise KitError(f"cannot read {path}: {err.strerror}", "check the path") from err
    except yaml.YAMLError as err:
        raise KitError(f"{path}: not valid YAML: {err}", "fix the syntax") from err
    if not isinstance(doc, dict):
        raise _fail(path, "top level", "expected a mapping", "keys schema, families, models")
    unknown = set(doc) - {"schema", "families", "models"}
    if unknown:
        raise _fail(
            path, "top level", f"unknown keys {sorted(unknown)}", "schema, families, models"
        )
    if doc.get("schema") != 1:
        raise _fail(path, "schema", f"bad value {doc.get('schema')!r}", "1")
    families = doc.get("families") or {}
    if not isinstance(families, dict) or set(families) - set(FAMILIES):
        raise _fail(path, "families", f"bad value {families!r}", ", ".join(FAMILIES))
    models = doc.get("models")
    if not isinstance(models, list) or not models:
        raise _fail(path, "models", "expected a non-empty list", "a list of model mappings")
    found: dict[str, ModelSpec] = {}
    for index, raw in enumerate(models):
        spec = _check_model(path, index, raw, families)
        if spec.id in found:
            raise _fail(path, f"models[{index}].id", f"duplicate id {spec.id!r}", "unique ids")
        found[spec.id] = spec
    return found


@functools.lru_cache(maxsize=1)
def _builtin() -> dict[str, ModelSpec]:
    return load_models(BUILTIN_MODELS)


def registry() -> dict[str, ModelSpec]:
    """Every model of the built-in registry, by id, in file order (read once per process;
    each call returns a new dict, so callers cannot change the cached one)."""
    return dict(_builtin())


def get_model(model_id: str) -> ModelSpec:
    """The registry entry for `model_id`. Raises KitError naming the valid ids."""
    models = registry()
    if model_id not in models:
        raise KitError(
            f"unknown model {model_id!r}",
            f"valid models: {', '.join(models)} (see `kit models list`)",
        )
    return models[model_id]
