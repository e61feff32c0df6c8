"""App-wide messages: small dataclasses that worker threads post to the app.

Each is a Textual `Message` (Textual initialises dataclass messages through
`Message.__post_init__`). A widget's own messages are nested in the widget class instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual.message import Message

from kit.gpu.snapshot import Detection
from kit.matrix import Cell, Matrix


@dataclass
class _Msg(Message):
    pass


@dataclass
class GpusDetected(_Msg):
    detection: Detection


@dataclass
class GpuReadings(_Msg):
    readings: dict[int, dict[str, Any]]
    lost: list[str] = field(default_factory=list)


@dataclass
class MatricesLoaded(_Msg):
    matrices: list[Matrix]
    past_per_rep_s: dict[tuple[str, str, str, str], float]


@dataclass
class ImagesListed(_Msg):
    images: Any  # kit.tui.models.matrix_tree.LocalImages


@dataclass
class RunPlanned(_Msg):
    run_dir: Path
    cells: list[Cell]
    finished: list[str]


@dataclass
class RunEvent(_Msg):
    event: dict[str, Any]


@dataclass
class RunEnded(_Msg):
    run_dir: Path
    counts: dict[str, int]
    interrupted: bool
    wall_s: float


@dataclass
class ResultsLoaded(_Msg):
    run_dir: Path
    rows: list[Any]  # kit.tui.models.results.ResultRow


@dataclass
class RunsListed(_Msg):
    runs: list[Any]  # kit.tui.models.runs.RunInfo


@dataclass
class BundleMade(_Msg):
    run_dir: Path
    path: Path
    sha256: str
    content_hash: str
    incomplete: bool


@dataclass
class ImageRowsListed(_Msg):
    rows: list[Any]  # kit.images.listing.ImageRow


@dataclass
class ImageBuildLine(_Msg):
    image: str  # "torch:cpu"
    line: str


@dataclass
class ImageBuildEnded(_Msg):
    image: str
    state: str  # built | failed | cancelled
    message: str


@dataclass
class PinsChecked(_Msg):
    """The images a docker run would use, and how each is pinned (before the run starts)."""

    request: Any  # the RunRequest waiting for them
    images: list[dict[str, Any]]
