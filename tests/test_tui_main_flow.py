"""The UI's main flow as a person does it (issue 11): `kit` started with its DEFAULTS (no
results folder injected: ./results of the working directory, which is not the checkout),
select CPU cells, run them, see them `ok` in Results, make a bundle from Runs, `kit verify`
it. Before the fix every cell crashed (a relative run directory reached the group process).
With the docker runner and an unpinned image the UI asks first, and run.json records it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input
from tui_support import screen_text, wait_for

from kit.gpu import nvml
from kit.tui.app import KitApp
from kit.tui.config import TuiConfig
from kit.tui.models.results import COLUMNS
from tests.conftest import docker_available
from tests.test_docker_runner import docker_images

__all__ = ["docker_images"]  # the session fixture
pytestmark = [pytest.mark.tui, pytest.mark.slow]
# two CPU cells of the tiny-ish gpt2-25m, eager prefill (the two prompts of single_micro)
TWO_CELLS = (
    "matrix=tr126,group=phase2-baseline,model=gpt2-25m,scenario=single_micro,"
    "backend=transformers-eager,mode=prefill"
)


@pytest.fixture
def fresh_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A working directory that is not the checkout, no KIT_RESULTS, no GPU."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(home)
    monkeypatch.delenv("KIT_RESULTS", raising=False)
    nvml.shutdown()
    monkeypatch.setenv("KIT_NVML_FAKE", "none")
    yield home
    nvml.shutdown()


async def _select(app: KitApp, pilot: object, selection: str, runner: str = "host") -> None:
    await wait_for(pilot, lambda: app.detection is not None and app.matrices is not None)
    await pilot.press("2")  # type: ignore[attr-defined]
    await pilot.press("slash")  # type: ignore[attr-defined]
    app.screen.query_one("#filter", Input).value = selection
    await pilot.press("enter")  # type: ignore[attr-defined]
    await pilot.press("d")  # type: ignore[attr-defined]  # device: cpu
    if runner == "docker":
        await pilot.press("r")  # type: ignore[attr-defined]
    assert "selected: 2 cells (tr126 2)" in screen_text(app)
    app.screen.query_one("#reps", Input).value = "2"
    app.screen.query_one("#warmup", Input).value = "1"


def _rows(app: KitApp) -> list[dict[str, str]]:
    table = app.screen.query_one(DataTable)
    return [
        {key: str(v) for (key, _), v in zip(COLUMNS, table.get_row_at(i), strict=True)}
        for i in range(table.row_count)
    ]


def test_defaults_select_run_results_bundle_verify(fresh_user: Path) -> None:
    asyncio.run(_main_flow(fresh_user))


async def _main_flow(home: Path) -> None:
    app = KitApp(TuiConfig())  # the defaults, as `kit` starts it
    assert app.config.results_dir == Path("results")
    async with app.run_test(size=(110, 32)) as pilot:
        await _select(app, pilot, TWO_CELLS)
        await pilot.press("g")
        await wait_for(pilot, lambda: app.results is not None, timeout=300)
        assert app.errors == []
        await pilot.press("4")
        await wait_for(pilot, lambda: app.screen.query(DataTable) and len(_rows(app)) == 2, 10)
        rows = _rows(app)
        assert [r["status"] for r in rows] == ["ok", "ok"], rows
        assert " ok " in screen_text(app)
        await pilot.press("5")
        await wait_for(pilot, lambda: bool(app.runs))
        await pilot.pause(0.2)
        await pilot.press("b")
        await wait_for(pilot, lambda: app.last_bundle is not None, timeout=120)
        assert app.errors == []
        assert app.last_bundle is not None
        bundle = app.last_bundle.path
    (run_dir,) = (home / "results").glob("tr126-*/run.json")
    assert bundle.resolve().parent == (home / "results").resolve()
    verify = subprocess.run(
        [sys.executable, "-m", "kit", "verify", str(bundle)],
        cwd=home, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "OK" in verify.stdout
    statuses = {json.loads(line)["status"] for line in (run_dir.parent / "cells.jsonl").open()}
    assert statuses == {"ok"}


@pytest.mark.docker
@pytest.mark.skipif(not docker_available(), reason="no Docker daemon answers")
def test_docker_run_with_an_unpinned_image_asks_first(
    fresh_user: Path, docker_images: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kit.images import inspect as image_inspect

    # as on a machine whose images came from a registry base the lock has no digest for
    monkeypatch.setattr(image_inspect, "local_bases", lambda: {})
    asyncio.run(_unpinned_flow(fresh_user))


async def _unpinned_flow(home: Path) -> None:
    from kit.tui.screens.unpinned import UnpinnedScreen

    app = KitApp(TuiConfig())
    async with app.run_test(size=(110, 32)) as pilot:
        await _select(app, pilot, TWO_CELLS, runner="docker")
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, UnpinnedScreen), timeout=60)
        text = screen_text(app)
        assert "Images not pinned" in text and "llm-repro-kit/torch:cpu" in text
        assert "lock has no digest" in text
        await pilot.press("n")  # cancel: nothing runs
        await pilot.pause(0.3)
        assert app.progress is None and not (home / "results").exists()
        await pilot.press("2")
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, UnpinnedScreen), timeout=60)
        await pilot.press("y")
        await wait_for(pilot, lambda: app.results is not None, timeout=300)
        assert app.errors == []
    (header_path,) = (home / "results").glob("tr126-*/run.json")
    header = json.loads(header_path.read_text())
    assert header["image_pinning"] == "unpinned" and header["settings"]["allow_unpinned"]
    assert header["images"][0]["pinned"] is False
    statuses = {json.loads(line)["status"] for line in (header_path.parent / "cells.jsonl").open()}
    assert statuses == {"ok"}
