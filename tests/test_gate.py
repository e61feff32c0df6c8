"""TR126's phase-1 gate, run for real on the CPU: the environment checks fail honestly (no
CUDA here), while Inductor compiles without graph breaks and eager/compiled agree."""

from __future__ import annotations

import json

import pytest

from kit.cli import main

pytestmark = pytest.mark.slow


def test_tr126_gate_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["gate", "tr126", "--device", "cpu", "--weights", "random", "--json"])
    report = json.loads(capsys.readouterr().out)
    checks = {c["check"]: c for c in report["checks"]}
    assert set(checks) == {
        "cuda_available",
        "triton_version",
        "inductor_graph_breaks",
        "in_container",
        "weight_parity",
    }
    assert (
        checks["cuda_available"]["passed"] is False
    )  # this machine has no GPU: the gate must say so
    assert code == 1 and report["passed"] is False
    # not a kit image here (a /.dockerenv alone, if any, is no proof: issue 11)
    assert checks["in_container"]["passed"] is False
    assert "no kit image fingerprint" in checks["in_container"]["detail"]
    assert (
        checks["inductor_graph_breaks"]["passed"] and checks["inductor_graph_breaks"]["value"] == 0
    )
    parity = checks["weight_parity"]
    assert parity["passed"], parity["detail"]
    assert parity["value"] <= 1e-4 and "0 token sequences differ" in parity["detail"]


def test_a_matrix_without_gates_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gate", "tr147", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "has no gates" in err and "Traceback" not in err
