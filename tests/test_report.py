from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from bundle_corpus import CASES
from runfactory import make_run_dir

from kit.bundle import plots
from kit.bundle.build import build_bundle
from kit.bundle.reader import BundleFiles
from kit.bundle.report import report_from_path
from kit.bundle.report_data import load
from kit.cli import main

TR126 = Path(__file__).resolve().parent.parent / "kit" / "matrix" / "builtin" / "tr126.yaml"


@pytest.fixture(scope="module")
def tr126_run(tmp_path_factory: pytest.TempPathFactory):
    """Six phase2-dynamic prefill cells: three eager, three compiled, one crashed."""
    path = tmp_path_factory.mktemp("report") / "run"
    run = make_run_dir(
        path, n_cells=6, n_samples=12, statuses=["ok"] * 5 + ["crash"], telemetry_rows=500
    )
    shutil.copy(TR126, path / "matrix" / "source.yaml")
    cells = json.loads((path / "matrix" / "cells.json").read_text())
    for cell in cells[3:]:
        cell["backend"], cell["backend_label"] = "transformers-compile", "compiled"
    (path / "matrix" / "cells.json").write_text(json.dumps(cells))
    return run


def _csv(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_published_table_compares_like_for_like(tr126_run, tmp_path: Path) -> None:
    out = report_from_path(tr126_run.path, tmp_path / "r", with_plots=False)
    rows = _csv(out / "published.csv")
    eager_25m = next(
        r for r in rows
        if r["group"] == "phase2-dynamic" and r["match"] == "model=gpt2-25m, backend=transformers-eager"
    )  # fmt: skip
    expected = float(np.mean(tr126_run.kept[tr126_run.cells[0]["id"]]))
    assert float(eager_25m["published"]) == pytest.approx(1.81)
    assert float(eager_25m["ours"]) == pytest.approx(expected, abs=1e-6)
    # One of the nine matrix cells of that entry ran: no ratio against a 9-cell mean.
    assert eager_25m["coverage"] == "partial 1/9 cells"
    assert (eager_25m["cells_measured"], eager_25m["cells_planned"]) == ("1", "9")
    assert eager_25m["ratio"] == ""
    assert float(eager_25m["ci_low"]) < expected < float(eager_25m["ci_high"])
    assert eager_25m["n"] == "12"
    aggregate = next(
        r for r in rows if r["group"] == "phase2-dynamic" and r["match"] == "backend=transformers-eager"
    )  # fmt: skip
    assert aggregate["coverage"] == "partial 3/54 cells" and aggregate["ratio"] == ""
    # Entries with no measured cell are not rows, only named in one line.
    assert all(int(r["cells_measured"]) > 0 for r in rows)
    assert not any("qwen" in r["match"] for r in rows)
    report = (out / "REPORT.md").read_text()
    assert (
        "## Published values vs ours" in report and "TR126 phase 2 dynamic prefill means" in report
    )
    assert "Not run (no cell of theirs measured" in report
    assert "phase2-dynamic (model=qwen2.5-3b, backend=transformers-eager) mean" in report


def test_published_ratio_only_with_every_matrix_cell_measured() -> None:
    from kit.bundle.report_data import ReportData
    from kit.bundle.report_tables import published_table
    from kit.matrix.spec import load_matrix

    cells = [
        dataclasses.asdict(c) | {"id": c.id}
        for c in load_matrix(str(TR126)).cells
        if c.group == "phase2-dynamic" and c.model == "gpt2-25m"
    ]
    entry = {"group": "phase2-dynamic", "matrix": "tr126", "statistic": "mean", "value": 2.0,
             "match": {"model": "gpt2-25m", "backend": "transformers-eager"}, "planned": 9}  # fmt: skip
    eager = [c for c in cells if c["backend"] == "transformers-eager"]
    assert len(eager) == 9

    def table(measured: list[dict], inputs: dict | None = None) -> dict:
        data = ReportData(
            manifest={}, cells={c["id"]: c for c in cells}, statuses={}, summary=[],
            ok_ms={(c["id"], "prefill"): [1.0, 1.0] for c in measured}, published=[entry],
            energy=[], oneoff=[], window_energy=[], timeline=[], throttle=[], windows=[],
            checks=[], notes=[], inputs=inputs or {},
        )  # fmt: skip
        return published_table(data)[0]

    full = table(eager)
    assert full["coverage"] == "full 9/9 cells" and full["ratio"] == pytest.approx(0.5)
    part = table(eager[:4])
    assert part["coverage"] == "partial 4/9 cells" and math.isnan(part["ratio"])
    assert part["ours"] == pytest.approx(1.0)
    assert table([])["cells_measured"] == 0
    # which prompts "ours" rests on: the journal's token_method of each measured cell
    from kit.bundle.report_data import CellInputs

    assert full["prompts"] == ""  # not recorded
    exact = {c["id"]: CellInputs("p", 8, "exact", None) for c in eager}
    assert table(eager, exact)["prompts"] == "exact"
    mixed = exact | {eager[0]["id"]: CellInputs("q", 9, "approximate", None)}
    assert table(eager, mixed)["prompts"] == "approximate 1/9"


def test_eager_vs_compiled_family_and_problem_cells(tr126_run, tmp_path: Path) -> None:
    out = report_from_path(tr126_run.path, tmp_path / "r", with_plots=False)
    eager = _csv(out / "eager_vs_compiled.csv")
    assert sorted(r["model"] for r in eager) == ["gpt2-100m", "gpt2-25m", "gpt2-50m"]
    assert all(r["compiled_over_eager"] for r in eager)
    family = {(r["model"], r["backend"]): r for r in _csv(out / "gpt2_family.csv")}
    assert family[("gpt2-50m", "transformers-eager")]["n_layer"] == "8"
    problems = _csv(out / "problem_cells.csv")
    assert [(p["status"], p["group"], p["reasons"]) for p in problems] == [
        ("crash", "phase2-dynamic", "child killed by signal 9")
    ]


def test_report_from_bundle_matches_report_from_run(tr126_run, tmp_path: Path) -> None:
    bundle = build_bundle(tr126_run.path, tmp_path / "b.tar.gz", report=False).path
    from_run = report_from_path(tr126_run.path, tmp_path / "from_run", with_plots=False)
    from_bundle = report_from_path(bundle, tmp_path / "from_bundle", with_plots=False)
    for name in ("published.csv", "eager_vs_compiled.csv", "gpt2_family.csv",
                 "energy_by_backend.csv", "problem_cells.csv"):  # fmt: skip
        assert (from_run / name).read_bytes() == (from_bundle / name).read_bytes(), name


def test_bundle_with_report_is_deterministic(tr126_run, tmp_path: Path) -> None:
    a = build_bundle(tr126_run.path, tmp_path / "a.tar.gz", plots=False).path
    b = build_bundle(tr126_run.path, tmp_path / "b.tar.gz", plots=False).path
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as tar:
        assert {"report/REPORT.md", "report/published.csv"} <= set(tar.getnames())


def test_plots_are_in_the_bundle_and_byte_stable(tr126_run, tmp_path: Path) -> None:
    bundle = build_bundle(tr126_run.path, tmp_path / "a.tar.gz").path
    with tarfile.open(bundle) as tar:
        names = set(tar.getnames())
        timeline = tar.extractfile("report/telemetry_timeline.png").read()  # type: ignore[union-attr]
    for png in ("telemetry_timeline", "prefill_eager_vs_compiled", "gpt2_depth_params",
                "energy_per_token"):  # fmt: skip
        assert f"report/{png}.png" in names
    assert timeline.startswith(b"\x89PNG")
    data = load(BundleFiles(bundle))
    (tmp_path / "again").mkdir()
    plots.telemetry_timeline(data, tmp_path / "again")
    assert (tmp_path / "again" / "telemetry_timeline.png").read_bytes() == timeline
    # Every table regenerates from the bundle alone, byte for byte.
    regenerated = report_from_path(bundle, tmp_path / "regen", with_plots=False)
    with tarfile.open(bundle) as tar:
        for name in ("published.csv", "eager_vs_compiled.csv", "problem_cells.csv"):
            inside = tar.extractfile(f"report/{name}").read()  # type: ignore[union-attr]
            assert (regenerated / name).read_bytes() == inside, name


def test_report_of_damaged_bundle_is_one_error_line(
    tr126_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = build_bundle(tr126_run.path, tmp_path / "g.tar.gz", report=False).path
    bad = tmp_path / "bad.tar.gz"
    CASES["truncated"][0](good, bad)
    assert main(["report", str(bad), "-o", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad} fails verification: archive is truncated")
    assert "Traceback" not in err and len(err.splitlines()) == 2  # the error and its hint
    # Even --unverified cannot render what cannot be read: still one error line.
    assert main(["report", str(bad), "-o", str(tmp_path / "x"), "--unverified"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read") and "Traceback" not in err


def test_energy_per_token_counts_only_timed_ok_samples(tr126_run, tmp_path: Path) -> None:
    """A compile phase (here spanning the warmups) and the warmups themselves must not reach
    the per-token energy; the compile energy is reported on its own."""
    run = tmp_path / "run"
    shutil.copytree(tr126_run.path, run)
    compiled = {c["id"] for c in tr126_run.cells[3:]}
    lines, warm, timed = [], {}, {}
    for line in (run / "journal.jsonl").read_text().splitlines():
        ev = json.loads(line)
        first_timed = ev.get("event") == "sample" and not ev["warmup"] and ev["cell"] in warm
        if first_timed and ev["cell"] in compiled:  # the compile covered the warmups
            t0, t1 = warm.pop(ev["cell"])
            lines.append(json.dumps({"event": "phase", "t_ns": t1, "phase": "compile",
                                     "cell": ev["cell"], "t0_ns": t0, "t1_ns": t1}))  # fmt: skip
        if ev.get("event") == "sample" and ev["warmup"]:
            t0, _ = warm.get(ev["cell"], (ev["t0_ns"], 0))
            warm[ev["cell"]] = (t0, ev["t1_ns"])
        if ev.get("event") == "sample" and not ev["warmup"] and ev["status"] == "ok":
            timed[ev["cell"]] = timed.get(ev["cell"], 0) + ev["t1_ns"] - ev["t0_ns"]
        lines.append(line)
    (run / "journal.jsonl").write_text("\n".join(lines) + "\n")
    span = tr126_run.span_ns
    joules_per_ns = 0.025 * 499 / (span[1] - span[0])  # runfactory: 25 mJ a row, 500 rows
    bundle = build_bundle(run, tmp_path / "e.tar.gz", plots=False).path
    out = report_from_path(bundle, tmp_path / "r", with_plots=False)
    data = load(BundleFiles(bundle))
    cell_energy = {r["cell"]: r for r in data.energy}
    assert set(cell_energy) == set(timed)
    window = {r["cell"]: float(r["energy_j"]) for r in data.window_energy}
    for cell, ns in timed.items():
        row = cell_energy[cell]
        assert float(row["energy_j"]) == pytest.approx(ns * joules_per_ns, rel=1e-3)
        assert float(row["energy_j"]) < 0.9 * window[cell]  # warmups are not counted
        assert row["energy_method"] == "counter"
    oneoff = [r for r in data.oneoff if r["phase"] == "compile"]
    assert {r["cell"] for r in oneoff} == compiled
    assert all(float(r["energy_j"]) > 0 for r in oneoff)
    by_backend = {r["backend"]: r for r in _csv(out / "energy_by_backend.csv")}
    eager_ids = [c["id"] for c in tr126_run.cells[:3]]
    eager_j = sum(float(cell_energy[c]["energy_j"]) for c in eager_ids if c in cell_energy)
    assert float(by_backend["transformers-eager"]["energy_j"]) == pytest.approx(eager_j, rel=1e-6)
    compiled_j = sum(float(cell_energy[c]["energy_j"]) for c in compiled if c in cell_energy)
    assert float(by_backend["transformers-compile"]["energy_j"]) == pytest.approx(compiled_j)
    compile_rows = _csv(out / "oneoff_energy_by_backend.csv")
    assert [(r["backend"], r["phase"]) for r in compile_rows] == [
        ("transformers-compile", "compile")
    ]
    assert float(compile_rows[0]["energy_j"]) == pytest.approx(
        sum(float(r["energy_j"]) for r in oneoff)
    )
    report = (out / "REPORT.md").read_text()
    assert "only the timed, status-ok, non-warmup repetitions" in report
    assert "one-off energy J" in report


def test_report_names_each_measuring_stack_and_its_locked_image(tmp_path: Path) -> None:
    from kit.env.write import write_process_env
    from kit.images.lock import read_lock

    run = make_run_dir(tmp_path / "run", n_cells=1, n_samples=3)
    gpu_host = {"torch": "2.11.0+cu130", "cuda_runtime": "13.0", "triton": "3.6.0",
                "transformers": "5.17.0", "flags": {}}  # fmt: skip
    write_process_env(run.path, "g1.attempt1", gpu_host)
    write_process_env(run.path, "g2.attempt1", {**gpu_host, "triton": "3.5.1"})
    out = report_from_path(run.path, tmp_path / "r", with_plots=False)
    report = (out / "REPORT.md").read_text()
    lock = read_lock()["images"]["torch:cuda-2.11"]["requirements_sha256"]
    assert (
        "- stack: torch 2.11.0+cu130, triton 3.6.0, transformers 5.17.0, CUDA 13.0 "
        f"(= image torch:cuda-2.11, lock sha256 {lock[:12]})"
    ) in report
    assert (
        "- stack: torch 2.11.0+cu130, triton 3.5.1, transformers 5.17.0, CUDA 13.0, host stack, no image"
        in report
    )


def test_coverage_counts_a_cell_run_with_overrides_as_its_matrix_cell(tr126_run) -> None:
    """`Coverage of the matrix`: a cell run with --device/--reps covers its matrix cell; two run
    cells of one matrix cell count once, with the better status; a cell of no matrix cell is a
    note, not a count."""
    from kit.bundle.reader import open_verified
    from kit.bundle.report_tables import coverage
    from kit.matrix import load_matrix, parse_selection, select_cells

    with open_verified(tr126_run.path) as opened:
        data = load(opened.source, opened.manifest)
    first, second = select_cells(load_matrix("tr126").cells, parse_selection(
        "group=phase2-dynamic,model=gpt2-25m,backend=transformers-eager,scenario=single_micro"))  # fmt: skip
    runs = [
        (first.replace(device="cpu", repetitions=3), "crash", ["exception: boom"]),
        (first.replace(repetitions=5), "ok", []),
        (second, "skipped", ["not here"]),
        (second.replace(model="gpt2-nope"), "ok", []),
    ]
    data = dataclasses.replace(
        data,
        cells={c.id: c.to_dict() for c, _, _ in runs},
        statuses={c.id: {"status": s, "reasons": r} for c, s, r in runs},
    )
    rows, notes, uncovered = coverage(data)
    row = next(r for r in rows if r["group"] == "phase2-dynamic")
    assert (row["matrix_cells"], row["run"], row["ok"], row["crash"], row["skipped"]) == (
        108, 2, 1, 0, 1)  # fmt: skip
    assert row["not_in_run"] == 106 and row["commonest_reason"].endswith("(1 cells)")
    assert sum(r["run"] for r in rows) == 2
    # every other matrix cell is listed once, by its matrix id; the two covered ones are not
    all_ids = [c.id for c in load_matrix("tr126").cells]
    assert [u["matrix_cell"] for u in uncovered] == [i for i in all_ids
                                                      if i not in (first.id, second.id)]  # fmt: skip
    assert uncovered[0]["group"] and set(uncovered[0]) >= {"model", "backend", "mode"}
    assert notes == [
        "1 cells of this run match no cell of matrix/source.yaml (the matrix file changed "
        "after they ran, or they came from another matrix)"
    ]
