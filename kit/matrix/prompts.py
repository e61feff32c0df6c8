"""Prompt sets and scenarios (built-in ones from builtin/prompts.yaml, plus a matrix's own)."""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kit.matrix import validate as v

PROMPTS_FILE = Path(__file__).parent / "builtin" / "prompts.yaml"
SCENARIO_KEYS = {
    "prompts": "a prompt set id",
    "batch_size": "sequences per call, an integer >= 1",
    "concurrency": "identical calls in flight, an integer >= 1",
    "per_prompt": "true: one cell per prompt; false: one cell for the set",
}
REPEAT_KEYS = {
    "repeat": "the text to repeat",
    "times": "how many times",
    "separator": "joined with",
}


@dataclasses.dataclass(frozen=True)
class Scenario:
    id: str
    prompts: str
    batch_size: int = 1
    concurrency: int = 1
    per_prompt: bool = True


@dataclasses.dataclass(frozen=True)
class PromptBook:
    prompt_sets: dict[str, list[str]]
    scenarios: dict[str, Scenario]

    def extended(self, prompt_sets: Any, scenarios: Any, p: v.Problems) -> PromptBook:
        """A copy with a matrix file's own prompt sets and scenarios added (validated)."""
        sets = dict(self.prompt_sets)
        if prompt_sets is not None and v.check(
            p,
            "prompt_sets",
            prompt_sets,
            lambda x: isinstance(x, dict),
            "a mapping of set id to prompts",
        ):
            for name, items in prompt_sets.items():
                sets[str(name)] = _prompt_list(items, f"prompt_sets.{name}", p)
        found = dict(self.scenarios)
        if scenarios is not None and v.check(
            p,
            "scenarios",
            scenarios,
            lambda x: isinstance(x, dict),
            "a mapping of scenario id to settings",
        ):
            for name, spec in scenarios.items():
                sc = _scenario(str(name), spec, sets, f"scenarios.{name}", p)
                if sc:
                    found[sc.id] = sc
        return PromptBook(sets, found)

    def texts(self, scenario: str, prompt_index: int, batch_size: int) -> list[str]:
        """The prompt texts one call sends: one per sequence of the batch."""
        prompts = self.prompt_sets[self.scenarios[scenario].prompts]
        if batch_size == 1:
            return [prompts[prompt_index]]
        return [prompts[(prompt_index + i) % len(prompts)] for i in range(batch_size)]


def _prompt_list(items: Any, path: str, p: v.Problems) -> list[str]:
    if not isinstance(items, list) or not items:
        p.add(path, items, "a non-empty list of prompts (strings or {repeat, times, separator})")
        return []
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str) and item:
            out.append(item)
        elif isinstance(item, dict) and v.check_keys(
            p, f"{path}[{i}]", item, REPEAT_KEYS, required=("repeat", "times")
        ):
            if v.check(
                p, f"{path}[{i}].times", item["times"], lambda t: v.is_int(t, 1), "an integer >= 1"
            ):
                out.append(
                    str(item.get("separator", " ")).join([str(item["repeat"])] * item["times"])
                )
        elif not isinstance(item, dict):
            p.add(f"{path}[{i}]", item, "a non-empty string or {repeat, times, separator}")
    return out


def _scenario(
    name: str, spec: Any, sets: dict[str, list[str]], path: str, p: v.Problems
) -> Scenario | None:
    if not v.check_keys(p, path, spec, SCENARIO_KEYS, required=("prompts",)):
        return None
    ok = v.check(
        p,
        f"{path}.prompts",
        spec["prompts"],
        lambda s: s in sets,
        "a prompt set id: " + ", ".join(sets),
    )
    ok &= v.check(
        p,
        f"{path}.batch_size",
        spec.get("batch_size", 1),
        lambda x: v.is_int(x, 1),
        SCENARIO_KEYS["batch_size"],
    )
    ok &= v.check(
        p,
        f"{path}.concurrency",
        spec.get("concurrency", 1),
        lambda x: v.is_int(x, 1),
        SCENARIO_KEYS["concurrency"],
    )
    ok &= v.check(
        p,
        f"{path}.per_prompt",
        spec.get("per_prompt", True),
        lambda x: isinstance(x, bool),
        "true or false",
    )
    if not ok:
        return None
    return Scenario(
        name,
        spec["prompts"],
        spec.get("batch_size", 1),
        spec.get("concurrency", 1),
        spec.get("per_prompt", True),
    )


@cache
def builtin_prompt_book() -> PromptBook:
    raw = yaml.safe_load(PROMPTS_FILE.read_text())
    p = v.Problems(PROMPTS_FILE.name)
    book = PromptBook({}, {}).extended(raw["prompt_sets"], raw["scenarios"], p)
    p.raise_if_any()
    return book
