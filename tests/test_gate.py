"""TR126's phase-1 gate, run for real on the CPU: the environment checks fail honestly (no
CUDA here), while Inductor compiles without graph breaks and eager/compiled agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kit.cli import main

pytestmark = pytest.mark.slow


def test_tr126_gate_on_cpu(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text("{}")
    code = main(["gate", "tr126", "--device", "cpu", "--weights", "random", "--json",
                 "--record", str(tmp_path)])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    # recorded into the run directory, where `kit claims` reads it (claim tr126-phase1-gate)
    recorded = json.loads((tmp_path / "env" / "gate-tr126.json").read_text())
    assert recorded["matrix"] == "tr126" and recorded["checks"] == report["checks"]
    from kit.claims.engine import evaluate_claim
    from kit.claims.evidence import Evidence
    from kit.claims.spec import claims_path, load_claims

    gate_claim = next(c for c in load_claims(claims_path("tr126")).claims if c.rule == "gate")
    verdict = evaluate_claim(gate_claim, Evidence("tr126", {}, None, {"tr126": recorded}, []))
    assert verdict.verdict == "not reproduced" and "cuda_available = False" in verdict.why
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
