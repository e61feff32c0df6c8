"""The Claims view of a run (Results screen, key `c`): one row per claim, from kit.claims."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kit.errors import KitError

COLUMNS = (
    ("id", "claim"),
    ("verdict", "verdict"),
    ("statistic", "statistic (95% CI, n)"),
    ("published", "published"),
    ("why", "why"),
)


@dataclasses.dataclass(frozen=True)
class ClaimRow:
    id: str
    verdict: str
    statistic: str
    published: str
    why: str
    statement: str
    source: str

    def text(self, key: str) -> str:
        return str(getattr(self, key))


@dataclasses.dataclass(frozen=True)
class ClaimsView:
    title: str
    rows: tuple[ClaimRow, ...]
    error: str = ""


def claims_view(run_dir: Path) -> ClaimsView:
    """The claims of a run directory (or bundle); a KitError becomes the view's error line."""
    from kit.claims import claims_for_path
    from kit.claims.render import statistic_text

    try:
        report = claims_for_path(run_dir)
    except KitError as err:
        return ClaimsView(f"{run_dir.name}: no claims", (), f"{err.title} ({err.hint})")
    rows = tuple(
        ClaimRow(r.id, r.verdict, statistic_text(r), r.published, r.why, r.statement, r.source)
        for r in report.results
    )
    counts = ", ".join(f"{n} {v}" for v, n in report.counts().items())
    return ClaimsView(f"{run_dir.name}: claims of {report.matrix}: {counts}", rows)
