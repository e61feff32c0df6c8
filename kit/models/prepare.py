"""Make a registry model usable: a verified checkpoint in the cache, and a record of it.

`prepare` is idempotent: a checkpoint whose `prepared.json` matches the request and whose files
still hash to the recorded sha256 is reused; anything else is rebuilt in a staging folder and
swapped in whole, so an interrupted prepare never leaves a half checkpoint behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kit import __version__
from kit.errors import KitError
from kit.matrix.models import ModelSpec, get_model
from kit.models import hub
from kit.models.cache import model_dir, sha256_file
from kit.models.synth import INIT_DESCRIPTION, synthesize

RECORD = "prepared.json"
WEIGHTS_CHOICES = ("auto", "hub", "random")


class NothingToPrepare(KitError):
    """The model has no checkpoint the kit manages (an Ollama tag)."""


@dataclass(frozen=True)
class PreparedModel:
    model_id: str
    path: Path
    weights: str  # "hub" or "random"
    sha256: str  # the weights file's sha256 (several shards: sha256 of their "name sha" lines)
    files: dict[str, str]  # every checkpoint file (relative path) -> sha256
    approximate: bool  # random weights: the published architecture, not its trained values
    seed: int | None
    revision: str | None  # the hub commit the files came from
    reason: str  # why these weights were chosen
    reused: bool  # an existing verified checkpoint was kept

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def _config_digest(spec: ModelSpec) -> str:
    return hashlib.sha256(json.dumps(spec.config, sort_keys=True).encode()).hexdigest()


def _weights_digest(files: dict[str, str]) -> str:
    weights = sorted(n for n in files if n.endswith(".safetensors")) or sorted(
        n for n in files if n.endswith(".bin")
    )
    if not weights:
        raise KitError("the checkpoint has no weights file (.safetensors or .bin)", "")
    if len(weights) == 1:
        return files[weights[0]]
    lines = "".join(f"{files[n]}  {n}\n" for n in weights)
    return hashlib.sha256(lines.encode()).hexdigest()


def _hash_files(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != RECORD and ".cache" not in p.relative_to(folder).parts
    }


def _read_record(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _reuse(folder: Path, expect: dict[str, Any], reason: str) -> PreparedModel | None:
    """The recorded checkpoint in `folder` if it matches `expect` and its files verify."""
    record = _read_record(folder)
    if record is None or any(record.get(k) != v for k, v in expect.items()):
        return None
    files = record.get("files")
    if not isinstance(files, dict) or not files:
        return None
    for name, digest in files.items():
        path = folder / name
        if not path.is_file() or sha256_file(path) != digest:
            return None
    return _result(folder, record, reason, reused=True)


def _result(folder: Path, record: dict[str, Any], reason: str, reused: bool) -> PreparedModel:
    return PreparedModel(
        model_id=record["model_id"],
        path=folder,
        weights=record["weights"],
        sha256=record["sha256"],
        files=dict(record["files"]),
        approximate=record["weights"] == "random",
        seed=record.get("seed"),
        revision=record.get("revision"),
        reason=reason,
        reused=reused,
    )


def _install(staging: Path, target: Path, record: dict[str, Any], reason: str) -> PreparedModel:
    (staging / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    if target.exists():
        shutil.rmtree(target)
    try:
        os.replace(staging, target)
    except OSError as err:  # another prepare of the same model finished first: keep its copy
        expect = {k: record[k] for k in ("model_id", "weights", "sha256", "seed")}
        raced = _reuse(target, expect, reason)
        if raced is None:
            raise KitError(f"cannot install the checkpoint into {target}: {err}", "") from err
        return raced
    return _result(target, record, reason, reused=False)


def _staging(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the cache from containers of other users
    return staging


def _base_record(spec: ModelSpec, weights: str) -> dict[str, Any]:
    return {
        "schema": 1,
        "model_id": spec.id,
        "weights": weights,
        "hub_id": spec.hub_id,
        "config_sha256": _config_digest(spec),
    }


def _prepare_random(spec: ModelSpec, seed: int, reason: str) -> PreparedModel:
    target = model_dir(spec.id, "random", seed)
    expect = {**_base_record(spec, "random"), "seed": seed, "init": INIT_DESCRIPTION}
    reused = _reuse(target, expect, reason)
    if reused is not None:
        return reused
    staging = _staging(target)
    try:
        synth = synthesize(spec, staging, seed=seed)
        files = _hash_files(staging)
        record = {
            **expect,
            "sha256": synth.sha256,
            "files": files,
            "dtype": synth.dtype,
            "n_params": synth.n_params,
            "revision": None,
            "kit_version": __version__,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        return _install(staging, target, record, reason)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _prepare_hub(spec: ModelSpec, reason: str) -> PreparedModel:
    assert spec.hub_id is not None  # the registry requires it for non-Ollama models
    target = model_dir(spec.id, "hub")
    expect = _base_record(spec, "hub")
    if spec.revision is not None:
        expect["revision"] = spec.revision
    reused = _reuse(target, expect, reason)
    if reused is not None:
        return reused
    staging = _staging(target)
    try:
        snapshot = hub.download_snapshot(spec.hub_id, spec.revision, staging)
        files = _hash_files(staging)
        record = {
            **expect,
            "revision": snapshot.revision,
            "requested_revision": spec.revision,
            "sha256": _weights_digest(files),
            "files": files,
            "seed": None,
            "kit_version": __version__,
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        return _install(staging, target, record, reason)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def prepare(model_id: str, weights: str = "auto", seed: int = 42) -> PreparedModel:
    """A verified checkpoint of `model_id` in the cache (reused when one exists).

    `weights`: "hub" downloads (raises KitError "hub unreachable" offline), "random"
    synthesizes from the registry config with `seed`, "auto" reuses a cached hub checkpoint,
    else downloads when the hub answers, else synthesizes. Raises NothingToPrepare for an
    Ollama tag and KitError for an unknown model or weights kind.
    """
    spec = get_model(model_id)
    if spec.is_ollama:
        raise NothingToPrepare(
            f"{model_id} is an Ollama tag: nothing to prepare",
            f"the ollama backend pulls it (`ollama pull {spec.ollama_tag}`)",
        )
    if weights not in WEIGHTS_CHOICES:
        raise KitError(f"unknown weights {weights!r}", f"valid: {', '.join(WEIGHTS_CHOICES)}")
    if weights == "random":
        return _prepare_random(spec, seed, "--weights random")
    if weights == "hub":
        return _prepare_hub(spec, "--weights hub")
    cached = _reuse(model_dir(spec.id, "hub"), _base_record(spec, "hub"), "auto: cached hub")
    if cached is not None and spec.revision in (None, cached.revision):
        return cached
    why_not = hub.unreachable_reason()
    if why_not is None:
        return _prepare_hub(spec, "auto: hub reachable")
    return _prepare_random(spec, seed, f"auto: hub unreachable ({why_not})")


def prepared_kinds(model_id: str, seed: int = 42) -> list[str]:
    """Which checkpoints of `model_id` the cache holds a record for (not verified: cheap)."""
    return [
        kind for kind in ("hub", "random") if (model_dir(model_id, kind, seed) / RECORD).is_file()
    ]
