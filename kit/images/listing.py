"""Every image variant the kit knows, with its stack, lock and base, and whether it is built
here: the rows of `kit images list` and of the UI's Images screen."""

from __future__ import annotations

import dataclasses
from typing import Any

from kit.images.lock import lock_entry
from kit.images.registry import IMAGES, ImageSpec, Variant
from kit.images.stacks import image_stack_label

UNPINNED = "unpinned"


@dataclasses.dataclass(frozen=True)
class ImageRow:
    image: str  # "torch:cuda-2.11"
    tag: str  # "llm-repro-kit/torch:cuda-2.11"
    stack: str
    lock_sha256: str | None  # None: not locked yet
    lock_note: str | None  # why there is no lock (e.g. an index this machine cannot reach)
    base: str
    base_digest: str  # sha256:... or "unpinned"
    built: bool | None  # None: the daemon could not be asked
    image_id: str | None = None
    built_from: str | None = None  # the BASE_IMAGE the built image records
    pinned: bool | None = None  # built from the base the lock pins
    unpinned_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _lock_facts(spec: ImageSpec, variant: Variant) -> tuple[str | None, str | None, str, str]:
    entry = lock_entry(spec, variant) or {}
    note = None
    if not entry:
        note = "not locked" + (f": needs {variant.extra_index}" if variant.extra_index else "")
    base = entry.get("base") or variant.base_template
    return entry.get("requirements_sha256"), note, base, entry.get("base_digest") or UNPINNED


def image_rows(client: Any | None, daemon_error: str | None = None) -> list[ImageRow]:
    """One row per image variant; `client` (a docker client) None: built is unknown."""
    rows = []
    for spec in IMAGES.values():
        for variant in spec.variants:
            lock_sha, note, base, digest = _lock_facts(spec, variant)
            row = ImageRow(
                image=f"{spec.name}:{variant.name}",
                tag=spec.tag(variant),
                stack=image_stack_label(spec, variant),
                lock_sha256=lock_sha,
                lock_note=note or daemon_error,
                base=base,
                base_digest=digest,
                built=None,
            )
            if client is not None:
                row = _with_build_facts(client, row, spec, variant)
            rows.append(row)
    return rows


def _with_build_facts(client: Any, row: ImageRow, spec: ImageSpec, variant: Variant) -> ImageRow:
    import docker.errors

    from kit.images.inspect import image_facts, pin_status

    try:
        facts = image_facts(client, row.tag)
    except docker.errors.ImageNotFound:
        return dataclasses.replace(row, built=False)
    pin = pin_status(facts, spec, variant, client)  # a local base: pinned by its layers
    return dataclasses.replace(
        row,
        built=True,
        image_id=facts.image_id,
        built_from=facts.base_image,
        pinned=pin.pinned,
        unpinned_reason=pin.reason,
    )


def render_rows(rows: list[ImageRow]) -> str:
    """The `kit images list` table."""
    header = f"{'image':<20} {'built':<6} {'lock sha256':<14} {'base digest':<21} stack"
    lines = [header]
    for r in rows:
        built = {True: "yes", False: "no", None: "?"}[r.built]
        lock = (r.lock_sha256 or "none")[:12]
        digest = r.base_digest if r.base_digest == UNPINNED else r.base_digest[:19]
        lines.append(f"{r.image:<20} {built:<6} {lock:<14} {digest:<21} {r.stack}")
        if r.lock_note:
            lines.append(f"{'':<20} ({r.lock_note})")
    return "\n".join(lines)
