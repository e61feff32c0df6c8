"""Matrix files: load, validate (strictly) and expand into cells.

A matrix file (YAML) has `schema`, `id`, `title`, `source`, optional `defaults`, `groups`,
`gates`, `notes`, and optional `prompt_sets` / `scenarios` added to the built-in ones.
Each group is a cross product: backends x models (x dtypes) x quantizations x scenarios
(x prompts) or token lengths x modes. Building a matrix has no side effects.
"""

from __future__ import annotations

import dataclasses
import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from kit.matrix import validate as v
from kit.matrix.cell import BACKENDS, CACHES, DEVICES, DTYPES, MODES, QUANTIZATIONS, Cell
from kit.matrix.prompts import PromptBook, builtin_prompt_book
from kit.matrix.yaml_limits import load_limited
from kit.paths import SAFE_NAME_TEXT, is_safe_name

BUILTIN_DIR = Path(__file__).parent / "builtin"
BUILTIN_MATRICES = ("tr117", "tr126", "tr147")
SCHEMA_VERSION = 1

COMPILE_BACKENDS = ("inductor", "aot_eager", "eager", "cudagraphs")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
STATISTICS = ("mean", "median", "crash_rate", "degraded_share")
COMPILING_BACKENDS = ("transformers-compile",)  # the backends that read a `compile:` block
# The checks kit.harness.gates knows (tests keep the two lists equal).
GATE_CHECKS = (
    "cuda_available",
    "triton_version",
    "in_container",
    "inductor_graph_breaks",
    "weight_parity",
)
GATE_KEYS = {
    "id": "the gate id",
    "description": "one sentence",
    "checks": "a list of {check: NAME, ...its options}",
}
OLLAMA_MODELS = ("tags", "local")  # ollama groups: published tags, or the kit's own GGUF

ON_ERROR = ("stop", "continue")
STATIC_CACHE = ("fresh", "reuse", "preallocated")

SETTINGS = {
    "repetitions": "timed repetitions, an integer >= 1",
    "warmup": "warmup repetitions, an integer >= 0",
    "max_new_tokens": "forced output length, an integer >= 1",
    "seed": "an integer seed",
    "sampling": "{do_sample, temperature, top_p}",
    "device": "cpu or cuda",
    "cache": "dynamic or static",
    "static_cache": (
        "fresh (a new StaticCache per call), reuse (one per shape, reset per call) or"
        " preallocated (reuse, its tensors allocated before the first call, outside any compiled"
        " region)"
    ),
    "pad_to_multiple": "pad prompts to a multiple of this integer",
    "cudagraphs": "true or false",
    "scenarios": "a list of scenario ids",
    "modes": "a list of prefill, kv_decode, e2e_kv, generate",
    "token_lens": "a list of exact prompt lengths in tokens",
    "quantizations": "a list of fp32, fp16, int8 (TR117 labels)",
    "extension": "true for cells the published report did not run",
    "on_error": "stop (a failing call ends the cell) or continue (it is an error sample)",
}
GROUP_KEYS = {
    "id": "the group id",
    "description": "one sentence",
    "backends": "a list of {backend, label, device, compile}",
    "models": "a list of model ids or {model, dtype}",
    "local_models": "ollama groups: the kit models run instead with --ollama-models local",
    "published": "published values with their sources",
    "notes": "a list of sentences",
    **SETTINGS,
}
TOP_KEYS = {
    "schema": f"the schema version ({SCHEMA_VERSION})",
    "id": "the matrix id",
    "title": "a title",
    "source": "where the matrix comes from",
    "defaults": "settings for every group",
    "groups": "the list of groups",
    "gates": "checks that must pass before cells count",
    "notes": "a list of sentences",
    "prompt_sets": "extra prompt sets",
    "scenarios": "extra scenarios",
}
BACKEND_KEYS = {
    "backend": "a backend id",
    "label": "the original report's label",
    "device": "cpu or cuda",
    "compile": "torch.compile settings",
}
COMPILE_KEYS = {
    "backend": "inductor, aot_eager, eager or cudagraphs",
    "mode": "a torch.compile mode",
    "fullgraph": "true or false",
    "dynamic": "true, false or null",
    "recompile_limit": "an integer >= 1 (dynamo's recompile limit; the kit's default is 64)",
}
SAMPLING_KEYS = {
    "do_sample": "true or false",
    "temperature": "a number > 0",
    "top_p": "a number in (0, 1]",
}
PUBLISHED_KEYS = {
    "match": "cell fields to match",
    "statistic": "one of " + ", ".join(STATISTICS),
    "unit": "ms or share",
    "value": "the published number",
    "source": "where it was published",
    "note": "a caveat",
}
DEFAULTS: dict[str, Any] = {
    "repetitions": 30,
    "warmup": 3,
    "max_new_tokens": 64,
    "seed": 42,
    "sampling": {"do_sample": False},
    "device": "cuda",
    "cache": "dynamic",
    "static_cache": "fresh",
    "pad_to_multiple": None,
    "cudagraphs": True,
    "modes": ["prefill"],
    "token_lens": None,
    "quantizations": None,
    "extension": False,
    "scenarios": None,
    "on_error": "stop",
}


@dataclasses.dataclass(frozen=True)
class Published:
    group: str
    match: dict[str, Any]
    statistic: str
    unit: str
    value: float
    source: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Matrix:
    id: str
    title: str
    source: str
    path: Path
    sha256: str
    raw: dict[str, Any]
    cells: tuple[Cell, ...]
    published: tuple[Published, ...]
    groups: tuple[str, ...]

    def prompt_book(self) -> PromptBook:
        """The built-in prompt sets and scenarios plus the matrix file's own."""
        p = v.Problems(str(self.path))
        book = builtin_prompt_book().extended(
            self.raw.get("prompt_sets"), self.raw.get("scenarios"), p
        )
        p.raise_if_any()
        return book

    def gates(self) -> list[dict[str, Any]]:
        return list(self.raw.get("gates") or [])

    def notes(self) -> list[str]:
        notes = list(self.raw.get("notes") or [])
        for group in self.raw.get("groups") or []:
            notes += [f"{group['id']}: {n}" for n in group.get("notes") or []]
        return notes


def resolve_path(name: str) -> Path:
    """A built-in matrix id (tr117, tr126, tr147) or a path to a YAML file."""
    if name.lower() in BUILTIN_MATRICES:
        return BUILTIN_DIR / f"{name.lower()}.yaml"
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise v.MatrixError(
                f"matrix file {name} does not exist", "give a built-in id or an existing YAML file"
            )
        return path
    raise v.MatrixError(
        f"unknown matrix {name!r}",
        f"use one of {', '.join(BUILTIN_MATRICES)} or a path to a matrix YAML file (`kit matrix list`)",
    )


def load_matrix(name: str, ollama_models: str = "tags") -> Matrix:
    """Load, validate and expand a matrix; raises MatrixError listing every problem.

    `ollama_models`: "tags" runs the ollama groups on their published Ollama tags; "local"
    on the kit models of their `local_models` (the kit's own GGUF: the same weights as the
    other backends). A group without `local_models` keeps its tags."""
    if ollama_models not in OLLAMA_MODELS:
        raise v.MatrixError(
            f"--ollama-models {ollama_models!r} is not a choice", "use tags or local"
        )
    path = resolve_path(name)
    return _load(str(path.resolve()), ollama_models)


@cache
def _load(path_text: str, ollama_models: str = "tags") -> Matrix:
    path = Path(path_text)
    data = path.read_bytes()
    label = path.name if path.parent == BUILTIN_DIR else str(path)
    raw = load_limited(data, label)
    problems = v.Problems(label)
    cells, published = _expand(raw, problems, ollama_models)
    problems.raise_if_any()
    groups = tuple(g["id"] for g in raw["groups"])
    return Matrix(
        raw["id"],
        raw.get("title", raw["id"]),
        raw.get("source", ""),
        path,
        hashlib.sha256(data).hexdigest(),
        raw,
        tuple(cells),
        tuple(published),
        groups,
    )


def _expand(
    raw: Any, p: v.Problems, ollama_models: str = "tags"
) -> tuple[list[Cell], list[Published]]:
    if not v.check_keys(p, "(top)", raw, TOP_KEYS, required=("schema", "id", "groups")):
        return [], []
    v.check(p, "schema", raw.get("schema"), lambda s: s == SCHEMA_VERSION, f"{SCHEMA_VERSION}")
    if "id" in raw:
        v.check(p, "id", raw["id"], is_safe_name, f"a matrix id of {SAFE_NAME_TEXT}")
    _check_gates(raw.get("gates"), p)
    book = builtin_prompt_book().extended(raw.get("prompt_sets"), raw.get("scenarios"), p)
    defaults = dict(DEFAULTS)
    if "defaults" in raw and v.check_keys(p, "defaults", raw["defaults"], SETTINGS):
        defaults.update(raw["defaults"])
    cells: list[Cell] = []
    published: list[Published] = []
    groups = raw.get("groups")
    if not v.check(
        p, "groups", groups, lambda g: isinstance(g, list) and bool(g), "a non-empty list of groups"
    ):
        return [], []
    seen_groups: set[str] = set()
    for i, group in enumerate(groups):
        path = f"groups[{i}]"
        if not v.check_keys(p, path, group, GROUP_KEYS, required=("id", "backends", "models")):
            continue
        gid = group.get("id")
        # An unsafe id is a problem (the file is refused); its group is still checked.
        v.check(p, f"{path}.id", gid, is_safe_name, f"a group id of {SAFE_NAME_TEXT}")
        if gid in seen_groups:
            p.add(f"{path}.id", gid, "a group id not used before in this file")
        seen_groups.add(gid)
        settings = {**defaults, **{k: group[k] for k in SETTINGS if k in group}}
        path = f"groups[{i}] ({gid})"
        group_cells = _expand_group(
            str(raw.get("id")), str(gid), group, settings, book, path, p, ollama_models
        )
        cells += group_cells
        # --ollama-models local runs other models than the published ones (the tags): their
        # published values are still validated, but neither kept nor matched.
        replaced = ollama_models == "local" and "local_models" in group
        for j, entry in enumerate(group.get("published") or []):
            item = _published(str(gid), entry, f"{path}.published[{j}]", p)
            if item and replaced:
                continue
            if item:
                published.append(item)
                if group_cells and not any(_matches(c, item.match) for c in group_cells):
                    p.add(
                        f"{path}.published[{j}].match",
                        item.match,
                        "fields and values that select at least one cell of the group",
                    )
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        p.add(
            "groups",
            "duplicate cells",
            "each combination listed once (a model or backend appears twice?)",
        )
    return cells, published


def _check_settings(s: dict[str, Any], path: str, book: PromptBook, p: v.Problems) -> bool:
    ok = v.check(
        p,
        f"{path}.repetitions",
        s["repetitions"],
        lambda x: v.is_int(x, 1),
        SETTINGS["repetitions"],
    )
    ok &= v.check(p, f"{path}.warmup", s["warmup"], lambda x: v.is_int(x, 0), SETTINGS["warmup"])
    ok &= v.check(
        p,
        f"{path}.max_new_tokens",
        s["max_new_tokens"],
        lambda x: v.is_int(x, 1),
        SETTINGS["max_new_tokens"],
    )
    ok &= v.check(p, f"{path}.seed", s["seed"], lambda x: v.is_int(x, 0), SETTINGS["seed"])
    ok &= v.check_choice(p, f"{path}.device", s["device"], DEVICES)
    ok &= v.check_choice(p, f"{path}.cache", s["cache"], CACHES)
    ok &= v.check_choice(p, f"{path}.static_cache", s["static_cache"], STATIC_CACHE)
    ok &= v.check(
        p, f"{path}.cudagraphs", s["cudagraphs"], lambda x: isinstance(x, bool), "true or false"
    )
    ok &= v.check(
        p, f"{path}.extension", s["extension"], lambda x: isinstance(x, bool), "true or false"
    )
    ok &= v.check_choice(p, f"{path}.on_error", s["on_error"], ON_ERROR)
    ok &= v.check(
        p,
        f"{path}.pad_to_multiple",
        s["pad_to_multiple"],
        lambda x: x is None or v.is_int(x, 1),
        SETTINGS["pad_to_multiple"],
    )
    ok &= v.check_list(
        p, f"{path}.modes", s["modes"], lambda m: m in MODES, "one of " + ", ".join(MODES)
    )
    if s["quantizations"] is not None:
        ok &= v.check_list(
            p,
            f"{path}.quantizations",
            s["quantizations"],
            lambda q: q in QUANTIZATIONS,
            "one of " + ", ".join(QUANTIZATIONS),
        )
    if s["token_lens"] is not None:
        ok &= v.check_list(
            p, f"{path}.token_lens", s["token_lens"], lambda t: v.is_int(t, 1), "integers >= 1"
        )
    elif s["scenarios"] is None:
        p.add(
            f"{path}.scenarios",
            None,
            "a list of scenarios (or token_lens) for the group or in defaults",
        )
        ok = False
    else:
        ok &= v.check_list(
            p,
            f"{path}.scenarios",
            s["scenarios"],
            lambda x: x in book.scenarios,
            "a scenario id: " + ", ".join(book.scenarios),
        )
    sampling = s["sampling"]
    if v.check_keys(p, f"{path}.sampling", sampling, SAMPLING_KEYS):
        ok &= v.check(
            p,
            f"{path}.sampling.do_sample",
            sampling.get("do_sample", False),
            lambda x: isinstance(x, bool),
            "true or false",
        )
        if "temperature" in sampling:
            ok &= v.check(
                p,
                f"{path}.sampling.temperature",
                sampling["temperature"],
                lambda x: v.is_number(x) and x > 0,
                SAMPLING_KEYS["temperature"],
            )
        if "top_p" in sampling:
            ok &= v.check(
                p,
                f"{path}.sampling.top_p",
                sampling["top_p"],
                lambda x: v.is_number(x) and 0 < x <= 1,
                SAMPLING_KEYS["top_p"],
            )
    else:
        ok = False
    return ok


def _backends(
    group: dict[str, Any], settings: dict[str, Any], path: str, p: v.Problems
) -> list[dict[str, Any]]:
    out = []
    entries = group.get("backends")
    if not v.check(
        p,
        f"{path}.backends",
        entries,
        lambda x: isinstance(x, list) and bool(x),
        "a non-empty list of backends",
    ):
        return []
    for j, entry in enumerate(entries or []):
        bpath = f"{path}.backends[{j}]"
        if not v.check_keys(p, bpath, entry, BACKEND_KEYS, required=("backend",)):
            continue
        ok = v.check_choice(p, f"{bpath}.backend", entry.get("backend"), BACKENDS)
        if "label" in entry:
            ok &= v.check(
                p, f"{bpath}.label", entry["label"], is_safe_name, f"a label of {SAFE_NAME_TEXT}"
            )
        device = entry.get("device", settings["device"])
        ok &= v.check_choice(p, f"{bpath}.device", device, DEVICES)
        compile_cfg = entry.get("compile")
        if entry.get("backend") == "transformers-compile" and compile_cfg is None:
            p.add(f"{bpath}.compile", None, "compile settings for a transformers-compile backend")
            ok = False
        if (
            compile_cfg is not None
            and entry.get("backend") in BACKENDS
            and (entry.get("backend") not in COMPILING_BACKENDS)
        ):
            p.add(
                f"{bpath}.compile",
                compile_cfg,
                f"no compile settings: {entry.get('backend')} does not compile "
                f"(use backend {' or '.join(COMPILING_BACKENDS)})",
            )
            ok = False
        elif compile_cfg is not None:
            ok &= _check_compile(compile_cfg, f"{bpath}.compile", p)
        if ok:
            cfg = (
                None
                if compile_cfg is None
                else {
                    "backend": "inductor",
                    "mode": "default",
                    "fullgraph": False,
                    "dynamic": None,
                    **compile_cfg,
                }
            )
            out.append(
                {
                    "backend": entry["backend"],
                    "label": str(entry.get("label", entry["backend"])),
                    "device": device,
                    "compile": cfg,
                }
            )
    return out


def _check_compile(cfg: Any, path: str, p: v.Problems) -> bool:
    if not v.check_keys(p, path, cfg, COMPILE_KEYS):
        return False
    ok = v.check_choice(p, f"{path}.backend", cfg.get("backend", "inductor"), COMPILE_BACKENDS)
    ok &= v.check_choice(p, f"{path}.mode", cfg.get("mode", "default"), COMPILE_MODES)
    ok &= v.check(
        p,
        f"{path}.fullgraph",
        cfg.get("fullgraph", False),
        lambda x: isinstance(x, bool),
        "true or false",
    )
    ok &= v.check(
        p,
        f"{path}.dynamic",
        cfg.get("dynamic"),
        lambda x: x is None or isinstance(x, bool),
        "true, false or null",
    )
    if "recompile_limit" in cfg:
        ok &= v.check(
            p,
            f"{path}.recompile_limit",
            cfg["recompile_limit"],
            lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 1,
            "an integer >= 1",
        )
    return ok


def _models(
    group: dict[str, Any], settings: dict[str, Any], path: str, p: v.Problems
) -> list[tuple[str, str | None]]:
    """(model id, dtype or None: None means 'from the quantization label')."""
    from kit.matrix.models import registry

    known = registry()
    out: list[tuple[str, str | None]] = []
    entries = group.get("models")
    if not v.check(
        p,
        f"{path}.models",
        entries,
        lambda x: isinstance(x, list) and bool(x),
        "a non-empty list of models",
    ):
        return []
    for j, entry in enumerate(entries or []):
        mpath = f"{path}.models[{j}]"
        if isinstance(entry, str):
            entry = {"model": entry}
        if not v.check_keys(
            p,
            mpath,
            entry,
            {"model": "a model id", "dtype": "fp32, fp16, bf16 or native"},
            required=("model",),
        ):
            continue
        model = entry["model"]
        if model not in known:
            p.add(
                f"{mpath}.model",
                model,
                "a model of the registry (`kit models list`): " + ", ".join(sorted(known)),
            )
            continue
        dtype = entry.get("dtype")
        if dtype is None and settings["quantizations"] is None:
            dtype = "native" if known[model].family == "ollama" else "fp32"
        if dtype is not None and not v.check_choice(
            p, f"{mpath}.dtype", dtype, (*DTYPES, "native")
        ):
            continue
        out.append((model, dtype))
    return out


def _expand_group(
    matrix: str,
    gid: str,
    group: dict[str, Any],
    s: dict[str, Any],
    book: PromptBook,
    path: str,
    p: v.Problems,
    ollama_models: str = "tags",
) -> list[Cell]:
    settings_ok = _check_settings(s, path, book, p)
    backends = _backends(group, s, path, p)
    models = _models(group, s, path, p)
    if "local_models" in group:
        local = _models({"models": group["local_models"]}, s, f"{path}.local_models", p)
        if any(b["backend"] != "ollama" for b in backends):
            p.add(f"{path}.local_models", "local_models", "local_models in ollama-only groups")
        from kit.matrix.models import registry

        known = registry()
        for j, (model, _dtype) in enumerate(local):
            if known[model].is_ollama:
                p.add(f"{path}.local_models[{j}]", model, "a kit model (not an Ollama tag)")
        if ollama_models == "local":
            models = local
    if not (settings_ok and backends and models):
        return []
    units: list[
        tuple[str, int, int, int, int | None]
    ] = []  # scenario, prompt, batch, concurrency, token_len
    if s["token_lens"] is not None:
        units = [("token_len", 0, 1, 1, n) for n in s["token_lens"]]
    else:
        for name in s["scenarios"]:
            sc = book.scenarios[name]
            indices = range(len(book.prompt_sets[sc.prompts])) if sc.per_prompt else range(1)
            units += [(name, i, sc.batch_size, sc.concurrency, None) for i in indices]
    sampling = {"do_sample": False, **s["sampling"]}
    cells = []
    for b in backends:
        for model, dtype in models:
            for quant in s["quantizations"] or [None]:
                cell_dtype = dtype or ("fp16" if quant == "fp16" else "fp32")
                for scenario, prompt_index, batch, conc, token_len in units:
                    for mode in s["modes"]:
                        cells.append(
                            Cell(
                                matrix=matrix,
                                group=gid,
                                backend=b["backend"],
                                backend_label=b["label"],
                                device=b["device"],
                                model=model,
                                dtype=cell_dtype,
                                quantization=quant,
                                scenario=scenario,
                                prompt_index=prompt_index,
                                batch_size=batch,
                                concurrency=conc,
                                mode=mode,
                                repetitions=s["repetitions"],
                                warmup=s["warmup"],
                                max_new_tokens=s["max_new_tokens"],
                                token_len=token_len,
                                compile=b["compile"],
                                cache=s["cache"],
                                pad_to_multiple=s["pad_to_multiple"],
                                cudagraphs=s["cudagraphs"],
                                sampling=sampling,
                                seed=s["seed"],
                                extension=s["extension"],
                                on_error=s["on_error"],
                                static_cache=s["static_cache"],
                            )
                        )
    return cells


def _matches(cell: Cell, match: dict[str, Any]) -> bool:
    """The report's rule (kit.bundle.report_data): every `match` field equal as text."""
    fields = cell.to_dict()
    return all(str(fields.get(k)) == str(want) for k, want in match.items())


def _check_gates(gates: Any, p: v.Problems) -> None:
    if gates is None:
        return
    if not isinstance(gates, list):
        p.add("gates", gates, "a list of gates {id, description, checks}")
        return
    for i, gate in enumerate(gates):
        path = f"gates[{i}]"
        if not v.check_keys(p, path, gate, GATE_KEYS, required=("id", "checks")):
            continue
        checks = gate["checks"]
        if not isinstance(checks, list) or not checks:
            p.add(f"{path}.checks", checks, "a non-empty list of {check: NAME, ...}")
            continue
        for j, item in enumerate(checks):
            name = item.get("check") if isinstance(item, dict) else item
            if name not in GATE_CHECKS:
                p.add(f"{path}.checks[{j}].check", name, "one of " + ", ".join(GATE_CHECKS))


def _published(gid: str, entry: Any, path: str, p: v.Problems) -> Published | None:
    if not v.check_keys(
        p, path, entry, PUBLISHED_KEYS, required=("match", "statistic", "value", "source")
    ):
        return None
    ok = v.check(
        p,
        f"{path}.match",
        entry["match"],
        lambda m: isinstance(m, dict) and bool(m),
        "a mapping of cell fields to values",
    )
    ok &= v.check_choice(p, f"{path}.statistic", entry["statistic"], STATISTICS)
    ok &= v.check(p, f"{path}.value", entry["value"], v.is_number, "a number")
    if not ok:
        return None
    unit = entry.get("unit", "ms")
    return Published(
        gid,
        dict(entry["match"]),
        entry["statistic"],
        unit,
        float(entry["value"]),
        str(entry["source"]),
        str(entry.get("note", "")),
    )
