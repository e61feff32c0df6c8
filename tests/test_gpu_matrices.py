"""The device-side matrices and claims files (scripts/gpu/matrices/) stay valid: each matrix
loads, and each claims file validates, names a matrix file beside it, and every selection
it uses matches cells of that matrix (a renamed group would otherwise turn a claim into a
silent `not run` on the next GPU call)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.claims.spec import load_claims
from kit.matrix import load_matrix, select_cells

MATRICES = Path(__file__).resolve().parent.parent / "scripts" / "gpu" / "matrices"
CLAIMS = sorted(MATRICES.glob("*.claims.yaml"))


@pytest.mark.parametrize(
    "path", sorted(set(MATRICES.glob("*.yaml")) - set(CLAIMS)), ids=lambda p: p.name
)
def test_each_device_matrix_loads(path: Path) -> None:
    matrix = load_matrix(str(path))
    assert matrix.cells and matrix.id == path.stem


@pytest.mark.parametrize("path", CLAIMS, ids=lambda p: p.name)
def test_each_device_claims_file_selects_cells_of_its_matrix(path: Path) -> None:
    claims = load_claims(path)
    matrix = load_matrix(str(MATRICES / f"{claims.matrix}.yaml"))
    for claim in claims.claims:
        chosen = select_cells(matrix.cells, claim.select)
        assert chosen, f"{claim.id}: {claim.select} matches no cell of {claims.matrix}"
        for side in (claim.a, claim.b):
            if side is not None:
                assert [c for c in chosen if side.matches(c)], f"{claim.id}: a side matches none"
