"""Only kit/tui imports textual; nothing on the orchestrator side imports ML libraries.

Every kit module outside kit/tui (the harness too: it imports torch lazily, per backend, in
the measuring process) is imported in a fresh interpreter; sys.modules must then hold none
of the forbidden packages. kit.tui itself must not pull in torch either.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import kit

FORBIDDEN_EVERYWHERE = ("torch", "transformers", "vllm")
FORBIDDEN_OUTSIDE_TUI = ("textual", *FORBIDDEN_EVERYWHERE)
REPO = Path(__file__).resolve().parent.parent

PROBE = """
import importlib, json, sys
names = json.loads(sys.argv[1])
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except Exception as err:
        failed[name] = f"{type(err).__name__}: {err}"
roots = sorted({m.split('.')[0] for m in sys.modules})
print(json.dumps({"roots": roots, "failed": failed}))
"""


def kit_modules() -> list[str]:
    found = ["kit"]
    for info in pkgutil.walk_packages(kit.__path__, "kit."):
        if not info.name.endswith("__main__"):  # running them is not importing them
            found.append(info.name)
    return sorted(found)


def _import_in_fresh_process(names: list[str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(names)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_every_module_outside_tui_stays_free_of_textual_and_ml_libraries() -> None:
    names = [n for n in kit_modules() if not n.startswith("kit.tui")]
    assert "kit.cli" in names and "kit.runner.service" in names and "kit.gpu.sampler" in names
    result = _import_in_fresh_process(names)
    roots = set(result["roots"])  # type: ignore[arg-type]
    assert not roots & set(FORBIDDEN_OUTSIDE_TUI), sorted(roots & set(FORBIDDEN_OUTSIDE_TUI))
    # a module that cannot import here (an optional extra) must not hide a forbidden import
    failed = result["failed"]
    assert isinstance(failed, dict)
    assert all("torch" not in str(v) and "textual" not in str(v) for v in failed.values()), failed


def test_the_tui_imports_textual_but_no_ml_library() -> None:
    names = [n for n in kit_modules() if n.startswith("kit.tui")]
    assert "kit.tui.app" in names
    result = _import_in_fresh_process(names)
    roots = set(result["roots"])  # type: ignore[arg-type]
    assert "textual" in roots
    assert not roots & set(FORBIDDEN_EVERYWHERE)
    assert result["failed"] == {}
