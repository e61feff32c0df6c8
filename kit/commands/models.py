"""`kit models list|prepare`: the model registry, and checkpoints in the cache."""

from __future__ import annotations

import argparse
import fnmatch
import json
from pathlib import Path
from typing import Any

HELP = "list the registry's models, prepare checkpoints and tokenizers, export GGUF"

LIST_COLUMNS = ("id", "family", "params", "n_layer", "from", "tokenizer", "prepared", "role")
PREPARE_COLUMNS = ("model", "weights", "sha256", "state", "path")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    show = sub.add_parser("list", help="every model of the registry")
    show.add_argument("--json", action="store_true", help="print JSON")
    prep = sub.add_parser(
        "prepare",
        help="put checkpoints (and a tokenizer) into the model cache",
        description="Prepare checkpoints in the cache (KIT_CACHE). Names may use * wildcards.",
    )
    prep.add_argument("names", nargs="*", metavar="NAME", help="model ids, e.g. gpt2-25m 'qwen*'")
    prep.add_argument(
        "--weights",
        choices=("auto", "hub", "random"),
        default="auto",
        help="hub: download; random: synthesize from the config (seeded); "
        "auto (default): hub when reachable, else random",
    )
    prep.add_argument("--seed", type=int, default=42, help="seed for random weights (42)")
    prep.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        metavar="DIR",
        help="register a local tokenizer folder (vocab.json+merges.txt, or tokenizer.json)",
    )
    prep.add_argument("--json", action="store_true", help="print JSON")
    gguf = sub.add_parser(
        "export-gguf",
        help="export prepared checkpoints to GGUF (llama-cpp, ollama backends)",
        description="Export to GGUF beside the safetensors, cached by content hash "
        "(the backends also do it on demand). Names may use * wildcards.",
    )
    gguf.add_argument("names", nargs="+", metavar="MODEL", help="model ids, e.g. gpt2-25m")
    gguf.add_argument("--dtype", choices=("f32", "f16"), default="f32")
    gguf.add_argument("--weights", choices=("auto", "hub", "random"), default="auto")
    gguf.add_argument("--seed", type=int, default=42, help="seed for random weights (42)")
    gguf.add_argument("--json", action="store_true", help="print JSON")


def _human(count: int | None) -> str:
    if count is None:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.2f}{unit}" if unit == "B" else f"{count / size:.1f}{unit}"
    return str(count)


def list_result() -> list[dict[str, Any]]:
    from kit.matrix.models import registry
    from kit.models.prepare import prepared_kinds

    rows = []
    for spec in registry().values():
        row = spec.to_dict()
        row["prepared"] = [] if spec.is_ollama else prepared_kinds(spec.id)
        rows.append(row)
    return rows


def expand_names(patterns: list[str]) -> list[str]:
    """Registry ids matching `patterns` (exact ids or * wildcards), in the order given.
    Raises KitError for a pattern that matches nothing."""
    from kit.matrix.models import get_model, registry

    ids: list[str] = []
    for pattern in patterns:
        matched = fnmatch.filter(registry(), pattern) if "*" in pattern else [get_model(pattern).id]
        if not matched:
            get_model(pattern)  # raises, naming the valid ids
        ids += [m for m in matched if m not in ids]
    return ids


def prepare_result(
    names: list[str], weights: str, seed: int, tokenizer: Path | None
) -> dict[str, Any]:
    """Register the tokenizer (if any), then prepare each named model. Raises KitError."""
    from kit.errors import KitError
    from kit.matrix.models import get_model
    from kit.models.prepare import NothingToPrepare, prepare
    from kit.models.tokenizer import register_tokenizer

    ids = expand_names(names)
    if not ids and tokenizer is None:
        raise KitError("nothing to prepare", "name models (see `kit models list`) or --tokenizer")
    registered = []
    if tokenizer is not None:
        named = sorted({k for k in (get_model(i).tokenizer for i in ids) if k is not None})
        kinds: list[str | None] = [*named] or [None]  # None: recognised from the files
        for kind in kinds:
            reg = register_tokenizer(tokenizer, kind)
            registered.append({"tokenizer": reg.kind, "path": str(reg.path), "files": reg.files})
    models = []
    for model_id in ids:
        try:
            models.append({**prepare(model_id, weights, seed).to_dict(), "state": None})
        except NothingToPrepare as err:
            models.append({"model_id": model_id, "weights": None, "state": err.title})
    return {"tokenizers": registered, "models": models}


def _render_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    text = [[("-" if row.get(c) in (None, "") else str(row[c])) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in text]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in text]
    return "\n".join(lines)


def render_list(rows: list[dict[str, Any]]) -> str:
    table = [
        {
            **row,
            "params": _human(row["params"]),
            "from": row["hub_id"] or f"ollama:{row['ollama_tag']}",
            "prepared": ",".join(row["prepared"]),
        }
        for row in rows
    ]
    return _render_table(table, LIST_COLUMNS)


def render_prepare(result: dict[str, Any]) -> str:
    lines = [f"tokenizer {t['tokenizer']}: registered in {t['path']}" for t in result["tokenizers"]]
    rows = []
    for model in result["models"]:
        state = model["state"]
        if state is None:
            kind = "reused" if model["reused"] else "created"
            state = f"{kind}; {model['reason']}"
            if model["approximate"]:
                state += f"; random weights, seed {model['seed']}"
        rows.append({**model, "model": model["model_id"], "state": state})
    if rows:
        lines.append(_render_table(rows, PREPARE_COLUMNS))
    return "\n".join(lines)


def export_gguf_result(names: list[str], dtype: str, weights: str, seed: int) -> list[dict]:
    """Prepare each named model, then export it to GGUF (cached). Raises KitError."""
    from kit.harness.backends.gguf_export import cached_gguf
    from kit.models.prepare import prepare

    rows = []
    for model_id in expand_names(names):
        export = cached_gguf(prepare(model_id, weights, seed).path, dtype)
        state = "reused" if export.reused else f"exported in {export.export_ms:.0f} ms"
        rows.append({"model": model_id, "dtype": dtype, "state": state, **export.to_dict()})
    return rows


def run(args: argparse.Namespace) -> int:
    if args.models_command == "export-gguf":
        rows = export_gguf_result(args.names, args.dtype, args.weights, args.seed)
        columns = ("model", "dtype", "key", "state", "manifest_ok", "path")
        print(json.dumps(rows, indent=2) if args.json else _render_table(rows, columns))
        return 0
    if args.models_command == "list":
        rows = list_result()
        print(json.dumps(rows, indent=2) if args.json else render_list(rows))
        return 0
    result = prepare_result(args.names, args.weights, args.seed, args.tokenizer)
    print(json.dumps(result, indent=2) if args.json else render_prepare(result))
    return 0
