"""What the measurements mean: descriptive statistics, CIs, comparisons, run summaries.

numpy and scipy only: this package never imports torch or textual (a test checks).
Import the public names from here; see each module for the contracts.
"""

from __future__ import annotations

from kit.stats.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    Interval,
    RatioCI,
    bootstrap_ci,
    bootstrap_cis,
    ratio_of_medians_ci,
)
from kit.stats.compare import (
    EffectSize,
    MannWhitneyResult,
    TostResult,
    WelchResult,
    bonferroni,
    cohens_d,
    holm,
    mann_whitney,
    tost,
    tost_relative,
    welch_t,
)
from kit.stats.describe import Description, describe, iqr_outliers, normal_ci
from kit.stats.proportion import wilson_interval
from kit.stats.run_summary import PhaseSummary, RunSummary, summarize_run, write_summary

__all__ = [
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "Description",
    "EffectSize",
    "Interval",
    "MannWhitneyResult",
    "PhaseSummary",
    "RatioCI",
    "RunSummary",
    "TostResult",
    "WelchResult",
    "bonferroni",
    "bootstrap_ci",
    "bootstrap_cis",
    "cohens_d",
    "describe",
    "holm",
    "iqr_outliers",
    "mann_whitney",
    "normal_ci",
    "ratio_of_medians_ci",
    "summarize_run",
    "tost",
    "tost_relative",
    "welch_t",
    "wilson_interval",
    "write_summary",
]
