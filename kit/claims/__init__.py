"""Claims: the published findings of TR117 / TR126 / TR147 as data, and one verdict per claim
from a bundle (or run directory) alone. Orchestrator side: never imports torch or textual.

`claims_for_path(path)` is the entry point (verify, read, evaluate); see kit/claims/spec.py
for the file format and kit/claims/rules.py for the statistics.
"""

from __future__ import annotations

from kit.claims.engine import ClaimResult, ClaimsReport, evaluate
from kit.claims.evidence import Evidence, load_evidence
from kit.claims.source import claims_for_path, claims_for_source
from kit.claims.spec import ClaimsFile, load_claims

__all__ = [
    "ClaimResult",
    "ClaimsFile",
    "ClaimsReport",
    "Evidence",
    "claims_for_path",
    "claims_for_source",
    "evaluate",
    "load_claims",
    "load_evidence",
]
