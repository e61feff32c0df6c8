"""Where the evidence comes from: a verified bundle archive or a run directory.

A bundle is verified first (kit.bundle.verify: checksums, schema, consistency); the claims
engine never reads an unverified one. `open_evidence` is the one place to switch to the
shared "open a verified bundle or run dir" function once it exists.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from kit.bundle.report_data import MappingSource, Source
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
    """Evidence of a bundle archive (verified first) or a run directory; raises KitError."""
    if path.is_dir():
        from kit.bundle.rundir import RunDir
        from kit.bundle.stage import stage

        with tempfile.TemporaryDirectory(prefix="kit-claims-") as tmp:
            staged = stage(RunDir.open(path), Path(tmp))
            return load_evidence(MappingSource(staged.members))
    if not path.exists():
        raise KitError(f"not found: {path}", "give a bundle (.tar.gz/.tar.zst) or a run directory")
    from kit.bundle.reader import ArchiveError, BundleFiles
    from kit.bundle.verify import verify_bundle

    verified = verify_bundle(path)
    if not verified.ok:
        shown = "; ".join(verified.problems[:3])
        more = f" (and {len(verified.problems) - 3} more)" if len(verified.problems) > 3 else ""
        raise KitError(
            f"{path} does not verify: {shown}{more}",
            f"claims are evaluated only on a verified bundle: see `kit verify {path}`",
        )
    try:
        with BundleFiles(path) as files:
            return load_evidence(files)
    except ArchiveError as err:
        raise KitError(f"cannot read {path}: {err}", f"run `kit verify {path}`") from None
    except (KeyError, ValueError) as err:
        raise KitError(
            f"{path} lacks or mangles a member the claims need ({err})", f"run `kit verify {path}`"
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
