"""Where the evidence comes from: a verified bundle archive or a run directory.

A bundle is verified first (kit.bundle.reader.open_verified runs kit verify's checks); the
claims engine never reads an unverified one (there is no --unverified for claims).
"""

from __future__ import annotations

from pathlib import Path

from kit.bundle.report_data import Source
from kit.claims.engine import ClaimsReport, evaluate
from kit.claims.evidence import Evidence, load_evidence
from kit.claims.spec import (
    ClaimsFile,
    claims_path,
    has_builtin_claims,
    load_claims,
    parse_claims,
)
from kit.errors import KitError


def open_evidence(path: Path) -> Evidence:
    """Evidence of a bundle archive (verified first: one that fails `kit verify` is refused)
    or a run directory, through kit.bundle.reader.open_verified; raises KitError."""
    from kit.bundle.reader import open_verified

    with open_verified(path) as opened:
        try:
            return load_evidence(opened.source)
        except (KeyError, ValueError) as err:
            raise KitError(
                f"{path} lacks or mangles a member the claims need ({err})",
                f"run `kit verify {path}`",
            ) from None


def claims_file_for(
    matrix: str, claims: Path | None = None, carried: bytes | None = None
) -> ClaimsFile | None:
    """The given claims file, else the copy the bundle carries (matrix/claims.yaml), else the
    kit's built-in one for the matrix (None when there is none)."""
    if claims is not None:
        return load_claims(claims)
    if carried is not None:
        return parse_claims(carried, "bundle matrix/claims.yaml")
    if has_builtin_claims(matrix):
        return load_claims(claims_path(matrix))
    return None


def claims_for_evidence(evidence: Evidence, claims: Path | None = None) -> ClaimsReport:
    spec = claims_file_for(evidence.matrix, claims, evidence.claims_yaml)
    if spec is None:
        raise KitError(
            f"no claims are defined for matrix {evidence.matrix!r}",
            "the built-in matrices tr117, tr126 and tr147 have claims; give --claims FILE",
        )
    return evaluate(spec, evidence)


def claims_for_path(path: Path, claims: Path | None = None) -> ClaimsReport:
    """Verify and read `path`, then evaluate its matrix's claims (or the given file)."""
    return claims_for_evidence(open_evidence(path), claims)


def claims_for_source(source: Source, claims: Path | None = None) -> ClaimsReport | None:
    """Claims of a bundle being built or reported (None when its matrix has no claims)."""
    evidence = load_evidence(source)
    spec = claims_file_for(evidence.matrix, claims, evidence.claims_yaml)
    return evaluate(spec, evidence) if spec is not None else None
