"""What the reviewer gets: a deterministic archive of a run, its verification, report, comparison.

Layout of a bundle (schema 1; see `kit.bundle.manifest` for the hashing contract):

- `manifest.json`, `SHA256SUMS`, `run.json` (as the runner wrote it)
- `env/`: fingerprints as the run recorded them
- `matrix/`: `cells.json` (the resolved cells as run) and `source.yaml` (the matrix file)
- `results/`: `journal.jsonl` (every event), `samples.jsonl` (sample events, each with the
  `attempt` it belongs to; statistics use the last attempt), `phases.jsonl`, `groups.jsonl`,
  `statuses.jsonl` (every cell, `missing` when it never finished), `cell_summary.csv`,
  `cell_windows.csv` and, with telemetry, `cell_energy.csv`, `throttle_intervals.csv`,
  `telemetry_timeline.csv`
- `telemetry/`: the sampler's CSVs as recorded
- `integrity/`: `checks.jsonl` / `checks.csv`, one row per check with pass, fail or unknown
- `report/`: REPORT.md, plots and CSV exports (as `kit report` writes them)

Nothing here imports torch or textual; matplotlib is imported only when plotting.
"""

from __future__ import annotations
