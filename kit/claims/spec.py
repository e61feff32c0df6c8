"""Claims files: the published findings of a matrix, as data, validated strictly.

A claims file (YAML, `kit/matrix/builtin/claims/<matrix>.yaml`) has `schema`, `matrix`,
`source` and `claims`. Each claim has an `id`, the `statement` in the report's words, its
`source` (report and section), a `rule`, and the cells it needs as selections in the
`kit run --select` syntax (`select`, and `a` / `b` for the two sides of a ratio A/B).

Rules (see kit/claims/rules.py for the statistics):
- `direction`: median(A)/median(B) with a 95% bootstrap CI entirely below (or above) 1;
- `magnitude`: the direction, then our ratio vs the published one within +-`margin` (TOST by
  interval inclusion of the 90% CI); "direction only" when only the first holds;
- `equivalence`: A and B equal within +-`margin_pct` percent (90% CI of the ratio inside);
- `share`: a per-call (`level: call`) or per-cell (`level: cell`) share of `statuses` with a
  Wilson interval, against the published share +-`margin`;
- `ordering`: several `relations` (A below / above / equal to B) that must all hold;
- `gate`: the matrix's gate record (`kit gate --record RUN_DIR`) passed;
- `external`: a finding the kit cannot evaluate from one run (`reason` says why).
"""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kit.errors import KitError
from kit.matrix import validate as v
from kit.matrix.select import Selection, parse_selection
from kit.matrix.spec import BUILTIN_DIR

CLAIMS_DIR = BUILTIN_DIR / "claims"
CHECKOUT = BUILTIN_DIR.parents[2]  # the kit's source tree (kit/matrix/builtin -> its root)
SCHEMA_VERSION = 1
RULES = ("direction", "magnitude", "equivalence", "share", "ordering", "gate", "external")
EXPECT = ("below", "above")
RELATION_EXPECT = ("below", "above", "equal")
LEVELS = ("call", "cell")

TOP_KEYS = {
    "schema": f"the schema version ({SCHEMA_VERSION})",
    "matrix": "the matrix id these claims are about",
    "source": "where the findings come from",
    "claims": "the list of claims",
}
CLAIM_KEYS = {
    "id": "a unique claim id",
    "statement": "the finding in the report's words",
    "source": "report and section",
    "rule": "one of " + ", ".join(RULES),
    "select": "the cells the claim needs (a --select expression)",
    "a": "side A of the ratio A/B (a --select expression)",
    "b": "side B of the ratio A/B (a --select expression)",
    "per": "cell fields that split the claim into keys (e.g. [model, dtype])",
    "expect": "below or above (the ratio A/B vs 1)",
    "margin": "the equivalence margin (ratio units for magnitude, share units for share)",
    "margin_pct": "the equivalence margin in percent of B",
    "published": "the published values",
    "level": "call or cell (share rule)",
    "statuses": "sample or cell statuses counted (share rule)",
    "relations": "a list of {a, b, expect, margin_pct} (ordering rule)",
    "reason": "why the kit cannot evaluate it (external rule)",
    "note": "a caveat shown with the verdict",
}
PUBLISHED_KEYS = {
    "key": "the key fields this value is for (all keys when absent)",
    "a": "the published A (e.g. compiled mean ms)",
    "b": "the published B (e.g. eager mean ms)",
    "value": "the published ratio or share",
    "range": "[low, high] of the published ratio",
}
RELATION_KEYS = {
    "a": "side A (a --select expression)",
    "b": "side B (a --select expression)",
    "expect": "below, above or equal",
    "margin_pct": "for equal: the margin in percent",
}
REQUIRED_BY_RULE: dict[str, tuple[str, ...]] = {
    "direction": ("select", "a", "b", "expect"),
    "magnitude": ("select", "a", "b", "expect", "margin", "published"),
    "equivalence": ("select", "a", "b", "margin_pct"),
    "share": ("select", "level", "published", "margin"),
    "ordering": ("select", "relations"),
    "gate": (),
    "external": ("reason",),
}


@dataclasses.dataclass(frozen=True)
class PublishedValue:
    key: tuple[tuple[str, str], ...]  # () = every key
    low: float  # a published ratio (low == high) or range
    high: float
    text: str  # how the report stated it

    def applies(self, key: tuple[tuple[str, str], ...]) -> bool:
        return all(pair in key for pair in self.key)


@dataclasses.dataclass(frozen=True)
class Relation:
    a: Selection
    b: Selection
    expect: str
    margin_pct: float


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    source: str
    rule: str
    select: Selection
    a: Selection | None
    b: Selection | None
    per: tuple[str, ...]
    expect: str
    margin: float
    margin_pct: float
    published: tuple[PublishedValue, ...]
    level: str
    statuses: tuple[str, ...]
    relations: tuple[Relation, ...]
    reason: str
    note: str

    def published_text(self) -> str:
        if len(self.published) > 2:
            return f"per key ({len(self.published)} values)"
        return "; ".join(p.text for p in self.published) or "-"


@dataclasses.dataclass(frozen=True)
class ClaimsFile:
    matrix: str
    source: str
    path: str
    claims: tuple[Claim, ...]


def claims_path(matrix_id: str) -> Path:
    return CLAIMS_DIR / f"{matrix_id}.yaml"


def has_builtin_claims(matrix_id: str) -> bool:
    return claims_path(matrix_id).is_file()


def load_claims(path: Path) -> ClaimsFile:
    """Load and validate a claims file; raises MatrixError listing every problem."""
    return _load(str(path.resolve()))


@cache
def _load(path_text: str) -> ClaimsFile:
    path = Path(path_text)
    if path.parent == CLAIMS_DIR:
        label = f"claims/{path.name}"
    elif path.is_relative_to(CHECKOUT):  # e.g. scripts/gpu/matrices/*.claims.yaml: the same
        label = str(path.relative_to(CHECKOUT))  # label in every clone
    else:
        label = str(path)
    if not path.is_file():
        raise KitError(f"claims file {label} does not exist", "give an existing claims YAML file")
    return parse_claims(path.read_bytes(), label)


def parse_claims(data: bytes, label: str) -> ClaimsFile:
    """Parse and validate claims YAML text; `label` names it in problems and in the output."""
    try:
        raw = yaml.safe_load(data)
    except yaml.YAMLError as err:
        raise v.MatrixError(
            f"{label}: not valid YAML: {getattr(err, 'problem', err)}", "fix the YAML syntax"
        ) from None
    p = v.Problems(label)
    claims: list[Claim] = []
    if v.check_keys(p, "", raw, TOP_KEYS, required=("schema", "matrix", "claims")):
        v.check(p, "schema", raw["schema"], lambda x: x == SCHEMA_VERSION, str(SCHEMA_VERSION))
        v.check(p, "matrix", raw["matrix"], _text, "a matrix id")
        if isinstance(raw["claims"], list) and raw["claims"]:
            seen: set[str] = set()
            for i, item in enumerate(raw["claims"]):
                claim = _claim(item, f"claims[{i}]", p)
                if claim is not None:
                    if claim.id in seen:
                        p.add(f"claims[{i}].id", claim.id, "an id not used by another claim")
                    seen.add(claim.id)
                    claims.append(claim)
        else:
            p.add("claims", raw["claims"], "a non-empty list of claims")
    p.raise_if_any()
    return ClaimsFile(str(raw["matrix"]), str(raw.get("source", "")), label, tuple(claims))


def _text(x: Any) -> bool:
    return isinstance(x, str) and bool(x.strip())


def _selection(p: v.Problems, path: str, value: Any) -> Selection | None:
    if not isinstance(value, str):
        p.add(path, value, "a --select expression such as 'group=v1-prefill,mode=prefill'")
        return None
    try:
        return parse_selection(value)
    except KitError as err:
        p.add(path, value, f"a valid selection ({err.title})")
        return None


def _number(p: v.Problems, path: str, value: Any, positive: bool = False) -> float:
    ok = v.is_number(value) and (not positive or value > 0)
    v.check(p, path, value, lambda _: ok, "a positive number" if positive else "a number")
    return float(value) if ok else 0.0


def _claim(item: Any, path: str, p: v.Problems) -> Claim | None:
    if not v.check_keys(p, path, item, CLAIM_KEYS, required=("id", "statement", "source", "rule")):
        return None
    for key in ("id", "statement", "source"):
        v.check(p, f"{path}.{key}", item[key], _text, "a non-empty string")
    if not v.check_choice(p, f"{path}.rule", item["rule"], RULES):
        return None
    rule = item["rule"]
    for key in REQUIRED_BY_RULE[rule]:
        if key not in item:
            p.add(
                f"{path}.{key}", None, f"the key {key!r} ({CLAIM_KEYS[key]}), needed by rule {rule}"
            )
    select = _selection(p, f"{path}.select", item.get("select", ""))
    a = _selection(p, f"{path}.a", item["a"]) if "a" in item else None
    b = _selection(p, f"{path}.b", item["b"]) if "b" in item else None
    per = item.get("per", [])
    if not (isinstance(per, list) and all(_text(x) for x in per)):
        p.add(f"{path}.per", per, "a list of cell field names")
        per = []
    expect = item.get("expect", "below")
    v.check_choice(p, f"{path}.expect", expect, EXPECT)
    level = item.get("level", "call")
    v.check_choice(p, f"{path}.level", level, LEVELS)
    statuses = item.get("statuses", ["error"] if level == "call" else ["crash"])
    if not (isinstance(statuses, list) and statuses and all(_text(x) for x in statuses)):
        p.add(f"{path}.statuses", statuses, "a non-empty list of statuses")
        statuses = []
    margin = _number(p, f"{path}.margin", item.get("margin", 0.03), positive=True)
    margin_pct = _number(p, f"{path}.margin_pct", item.get("margin_pct", 3.0), positive=True)
    published = _published_values(p, f"{path}.published", item.get("published", []), rule)
    relations = []
    if "relations" in item:
        if isinstance(item["relations"], list) and item["relations"]:
            for j, rel in enumerate(item["relations"]):
                relation = _relation(p, f"{path}.relations[{j}]", rel)
                if relation is not None:
                    relations.append(relation)
        else:
            p.add(f"{path}.relations", item["relations"], "a non-empty list of relations")
    for key in ("reason", "note"):
        if key in item:
            v.check(p, f"{path}.{key}", item[key], _text, "a non-empty string")
    return Claim(
        id=str(item["id"]), statement=str(item["statement"]), source=str(item["source"]),
        rule=rule, select=select or Selection(), a=a, b=b, per=tuple(per), expect=str(expect),
        margin=margin, margin_pct=margin_pct, published=tuple(published), level=str(level),
        statuses=tuple(str(s) for s in statuses), relations=tuple(relations),
        reason=str(item.get("reason", "")), note=str(item.get("note", "")),
    )  # fmt: skip


def _published_values(p: v.Problems, path: str, value: Any, rule: str) -> list[PublishedValue]:
    if v.is_number(value):
        return [PublishedValue((), float(value), float(value), f"{value:g}")]
    if not isinstance(value, list):
        p.add(path, value, "a number or a list of {key, a, b, value, range}")
        return []
    out = []
    for i, entry in enumerate(value):
        where = f"{path}[{i}]"
        if not v.check_keys(p, where, entry, PUBLISHED_KEYS):
            continue
        key: tuple[tuple[str, str], ...] = ()
        label = ""
        if "key" in entry:
            if isinstance(entry["key"], dict) and entry["key"]:
                key = tuple(sorted((str(k), str(x)) for k, x in entry["key"].items()))
                label = ", ".join(str(x) for x in entry["key"].values())
            else:
                p.add(f"{where}.key", entry["key"], "a mapping of cell fields to values")
        prefix = f"{label}: " if label else ""
        if "a" in entry or "b" in entry:
            a = _number(p, f"{where}.a", entry.get("a"), positive=True)
            b = _number(p, f"{where}.b", entry.get("b"), positive=True)
            ratio = a / b if b else 0.0
            out.append(PublishedValue(key, ratio, ratio, f"{prefix}{a:g}/{b:g} = {ratio:.3f}"))
        elif "range" in entry:
            rng = entry["range"]
            if isinstance(rng, list) and len(rng) == 2 and all(v.is_number(x) for x in rng) and rng[0] <= rng[1]:  # fmt: skip
                out.append(PublishedValue(key, float(rng[0]), float(rng[1]), f"{prefix}{rng[0]:g} to {rng[1]:g}"))  # fmt: skip
            else:
                p.add(f"{where}.range", rng, "[low, high] with low <= high")
        elif "value" in entry:
            x = _number(p, f"{where}.value", entry["value"])
            out.append(PublishedValue(key, x, x, f"{prefix}{x:g}"))
        else:
            p.add(where, entry, "one of a/b, value or range")
    return out


def _relation(p: v.Problems, path: str, rel: Any) -> Relation | None:
    if not v.check_keys(p, path, rel, RELATION_KEYS, required=("a", "b", "expect")):
        return None
    a = _selection(p, f"{path}.a", rel["a"])
    b = _selection(p, f"{path}.b", rel["b"])
    ok = v.check_choice(p, f"{path}.expect", rel["expect"], RELATION_EXPECT)
    margin = _number(p, f"{path}.margin_pct", rel.get("margin_pct", 10.0), positive=True)
    if a is None or b is None or not ok:
        return None
    return Relation(a, b, str(rel["expect"]), margin)
