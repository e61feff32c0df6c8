"""PNG plots for the report, drawn with matplotlib's Agg backend (imported here, lazily).

Each function writes one file into `out_dir` and returns its name, or None when there is
nothing to draw. PNGs are written without the "Software" stamp so that the same data gives
the same bytes on the same matplotlib.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from kit.bundle.report_data import ReportData, num
from kit.paths import inside

DPI = 100


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out_dir: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(inside(out_dir, name), dpi=DPI, metadata={"Software": None})
    _plt().close(fig)
    return name


def eager_vs_compiled(rows: list[dict[str, Any]], out_dir: Path) -> str | None:
    rows = [r for r in rows if not math.isnan(r["eager_median_ms"] + r["compiled_median_ms"])]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 4))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["eager_median_ms"] for r in rows], 0.4, label="eager")
    ax.bar([x + 0.2 for x in xs], [r["compiled_median_ms"] for r in rows], 0.4, label="compiled")
    ax.set_xticks(list(xs), [f"{r['model']}\n{r['dtype']} {r['group']}" for r in rows], fontsize=7)
    ax.set_ylabel("prefill median (ms)")
    ax.set_title("Prefill: eager vs compiled")
    ax.legend()
    return _save(fig, out_dir, "prefill_eager_vs_compiled.png")


def gpt2_family(rows: list[dict[str, Any]], out_dir: Path) -> str | None:
    rows = [r for r in rows if not math.isnan(r["median_ms"])]
    if not rows:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    series = sorted({(r["backend"], r["mode"]) for r in rows})
    for backend, mode in series:
        pts = [r for r in rows if (r["backend"], r["mode"]) == (backend, mode)]
        label = f"{backend} {mode}"
        axes[0].plot([r["n_layer"] for r in pts], [r["median_ms"] for r in pts], "o", label=label)
        params = [(r["params"] or 0) / 1e6 for r in pts]
        axes[1].plot(params, [r["median_ms"] for r in pts], "o", label=label)
    axes[0].set_xlabel("depth (n_layer)")
    axes[1].set_xlabel("parameters (M)")
    for ax in axes:
        ax.set_ylabel("median latency (ms)")
    axes[0].set_title("GPT-2 family: latency vs depth")
    axes[1].set_title("GPT-2 family: latency vs parameters")
    axes[1].legend(fontsize=7)
    return _save(fig, out_dir, "gpt2_depth_params.png")


def energy_per_token(rows: list[dict[str, Any]], out_dir: Path) -> str | None:
    rows = [r for r in rows if not math.isnan(r["mj_per_token"])]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(rows)), 4))
    ax.bar(range(len(rows)), [r["mj_per_token"] for r in rows])
    ax.set_xticks(
        range(len(rows)), [f"{r['backend']}\n{r['mode']} {r['phase']}" for r in rows], fontsize=7
    )
    ax.set_ylabel("energy per token (mJ)")
    ax.set_title("Energy per token by backend (GPU, timed ok repetitions only)")
    return _save(fig, out_dir, "energy_per_token.png")


def telemetry_timeline(data: ReportData, out_dir: Path) -> str | None:
    if not data.timeline:
        return None
    plt = _plt()
    span = data.manifest.get("run_span_ns") or [0, 0]
    t0 = float(span[0])
    fields = (("sm_clock_mhz", "SM clock (MHz)"), ("power_w", "power (W)"), ("temp_c", "temp (C)"))
    fig, axes = plt.subplots(len(fields), 1, figsize=(11, 7), sharex=True)
    gpus = sorted({r["gpu"] for r in data.timeline})
    for ax, (field, label) in zip(axes, fields, strict=True):
        for gpu in gpus:
            pts = [r for r in data.timeline if r["gpu"] == gpu and r[field] != ""]
            xs = [(num(r["t_ns"]) - t0) / 1e9 for r in pts]
            ax.plot(xs, [num(r[field]) for r in pts], lw=0.8, label=gpu)
        ax.set_ylabel(label)
        for row in data.throttle:
            a, b = (num(row["start_ns"]) - t0) / 1e9, (num(row["end_ns"]) - t0) / 1e9
            ax.axvspan(a, max(b, a + 1e-3), color="red", alpha=0.25, lw=0)
        starts = [(num(w["start_ns"]) - t0) / 1e9 for w in data.windows]
        if starts:
            ax.vlines(starts, 0, 1, transform=ax.get_xaxis_transform(), colors="0.6", lw=0.3)
    axes[0].set_title("Telemetry: clocks, power, temperature (red: throttling; grey: cell starts)")
    axes[-1].set_xlabel("seconds since run start")
    if len(gpus) > 1:
        axes[0].legend(fontsize=7)
    return _save(fig, out_dir, "telemetry_timeline.png")
