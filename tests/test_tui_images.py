"""The Images screen under the Pilot, against the real Docker daemon: every image with its
stack, lock and base; a real (cached) build of the kit image streamed into the screen; a
cancelled build; and the Matrices screen's link from a disabled cell to its image."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from textual.widgets import DataTable, RichLog
from tui_support import frozen_app, screen_text, wait_for

from kit.tui.models.images import BuildProgress, image_for_problem, ui_build_options

pytestmark = [pytest.mark.tui, pytest.mark.usefixtures("fake_h100")]


def test_build_progress_reads_steps_layers_and_downloads() -> None:
    progress = BuildProgress("torch:cuda-2.11")
    for line in (
        "Step 16/27 : RUN kit-base-python -m venv /opt/venv",
        "  Downloading torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl (1.2 GB)",
        "  Downloading nvidia_cuda_nvrtc-13.0.88-py3-none-manylinux2010_x86_64.whl (90.2 MB)",
        " ---> 2919719ac55e",
    ):
        progress.feed(line)
    assert (progress.step, progress.steps, progress.layers, progress.downloads) == (16, 27, 1, 2)
    assert progress.download_bytes == pytest.approx(1.2e9 + 90.2e6)
    assert "step 16/27, 1 layers, 2 downloads (1290.2 MB)" in progress.text()


def test_ui_build_options_and_the_image_a_cell_needs(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    options = ui_build_options({"KIT_BASE_IMAGE": "llm-repro-kit/base:bookworm",
                                "KIT_EXTRA_CA_BUNDLE": str(ca)})  # fmt: skip
    assert options == {"base_image": "llm-repro-kit/base:bookworm", "network": "host",
                       "extra_ca_bundle": ca}  # fmt: skip
    assert ui_build_options({"KIT_EXTRA_CA_BUNDLE": "none"})["extra_ca_bundle"] is None
    assert image_for_problem("tensorrt", "cuda") == "tensorrt:cuda"
    assert image_for_problem("transformers-eager", "cpu") == "torch:cpu"
    assert image_for_problem("ollama", "cuda") is None


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    import subprocess

    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.mark.docker
def test_images_screen_lists_builds_and_cancels_against_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not _docker_answers():
        pytest.skip("no Docker daemon answers (scripts/ci-prepare starts one)")
    import subprocess

    build_base = Path(__file__).resolve().parent.parent / "scripts" / "build-base-image"
    subprocess.run([str(build_base)], check=True, capture_output=True)
    monkeypatch.setenv("KIT_BASE_IMAGE", "llm-repro-kit/base:bookworm")  # no registry here

    async def scenario() -> None:
        app = frozen_app(tmp_path / "results")
        async with app.run_test(size=(130, 40)) as pilot:
            await pilot.press("6")
            await wait_for(pilot, lambda: app.image_rows is not None)
            rows = {r.image: r for r in app.image_rows or []}
            assert {"kit:default", "torch:cpu", "torch:cuda-2.11", "tensorrt:cuda"} <= set(rows)
            text = screen_text(app)
            assert "torch 2.11.0, triton 3.6.0" in text and "unpinned" in text
            assert rows["tensorrt:cuda"].lock_sha256 is None
            # build the kit image (its layers are cached: the docker tests build it too)
            table = app.screen.query_one(DataTable)
            table.move_cursor(row=list(rows).index("kit:default"))
            await pilot.press("b")
            await wait_for(pilot, lambda: app.build_progress is not None
                           and app.build_progress.state != "building", timeout=600)  # fmt: skip
            progress = app.build_progress
            assert progress is not None and progress.state == "built", progress
            assert progress.steps > 5 and progress.step == progress.steps
            # the daemon's stream reached the screen's log widget (its lines, not only the rows
            # scrolled into view: the log may still be scrolling when the build ends)
            log = app.screen.query_one("#build-log", RichLog)
            await wait_for(pilot, lambda: any("Successfully tagged llm-repro-kit/kit:default"
                           in line.text for line in log.lines))  # fmt: skip
            assert f"step {progress.steps}/{progress.steps}" in screen_text(app)
            # a build cancelled before its stream ends keeps the old tag and says so
            await wait_for(pilot, lambda: not app.image_build_running())
            await pilot.press("b")
            await pilot.press("x")
            await wait_for(pilot, lambda: app.build_progress is not None
                           and app.build_progress.state != "building", timeout=600)  # fmt: skip
            assert app.build_progress is not None and app.build_progress.state == "cancelled"
            assert "cancelled" in app.build_progress.message
            assert app.errors == []

    asyncio.run(scenario())


def test_matrices_links_a_disabled_cell_to_the_image_it_needs(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = frozen_app(tmp_path / "results")
        async with app.run_test(size=(130, 40)) as pilot:
            await wait_for(pilot, lambda: app.matrices is not None)
            await pilot.press("2")
            await pilot.pause(0.1)
            from kit.tui.widgets.matrix_tree import MatrixTree

            tree = app.screen.query_one(MatrixTree)
            found = []

            def walk(node: object) -> None:
                data = getattr(node, "data", None)
                if data is not None and data.label == "tensorrt (tensorrt)":
                    found.append(node)
                for child in getattr(node, "children", []):
                    walk(child)

            walk(tree.root)
            assert found, "TR117 has a tensorrt backend node"
            for node in (found[0], *_ancestors(found[0])):
                node.expand()  # type: ignore[attr-defined]
            await pilot.pause(0.1)
            tree.move_cursor(found[0])  # type: ignore[arg-type]
            await pilot.pause(0.1)
            # no TensorRT here: the cells are disabled, the side panel names their image
            await wait_for(pilot, lambda: "image: tensorrt:cuda" in screen_text(app))
            await pilot.press("i")
            await wait_for(pilot, lambda: app.image_rows is not None)
            await pilot.pause(0.2)
            screen = app.screen
            assert screen is app.get_screen("images")
            selected = screen.selected()  # type: ignore[attr-defined]
            assert selected is not None and selected.image == "tensorrt:cuda"
            assert "not locked: needs https://pypi.nvidia.com" in screen_text(app)

    asyncio.run(scenario())


def _ancestors(node: object) -> list[object]:
    found = []
    parent = getattr(node, "parent", None)
    while parent is not None:
        found.append(parent)
        parent = getattr(parent, "parent", None)
    return found
