"""What a built image is: id, digests, base, pin status and the fingerprint it recorded.

The fingerprint file is read with `create` + `get_archive` (the container never starts), once
per image id.

What "pinned" means (docker/images.lock.json):
- a registry base (debian:bookworm-slim, pytorch/pytorch:...): the image was built FROM the
  `ref@sha256:digest` the lock records (`base_digest`; null where no registry answered when
  the lock was made: then the base is truly unpinned and a run needs --allow-unpinned or the
  UI's consent, recorded in run.json);
- a base the project builds itself (the lock's `local_bases`: llm-repro-kit/base:bookworm by
  scripts/build-base-image): debootstrap output is not byte-reproducible (package versions
  follow the mirror, the import stamps a time), so no digest written into the repository
  could match another machine's build. Pinned means instead: the image's filesystem layers
  begin with exactly the layers of the base present under that tag now (content hashes, so
  the image was built from THIS base, not an older one), and the run records that base's
  image id and layer digest, which the bundle carries.
"""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from typing import Any

from kit.images.lock import pinned_base, read_lock
from kit.images.registry import LABEL_PREFIX, ImageSpec, Variant

FINGERPRINT_PATH = "/etc/kit/image-fingerprint.json"
_fingerprints: dict[str, dict[str, Any]] = {}


@dataclasses.dataclass(frozen=True)
class ImageFacts:
    tag: str
    image_id: str
    repo_digests: tuple[str, ...]
    base_image: str  # the BASE_IMAGE it was built from (its label)
    base_digest: str | None  # sha256:... when the base was given by digest
    labels: dict[str, str]
    created: str
    layers: tuple[str, ...] = ()  # RootFS diff ids (content hashes), base layers first

    def to_json(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "image_id": self.image_id,
            "repo_digests": list(self.repo_digests),
            "base_image": self.base_image,
            "base_digest": self.base_digest,
            "created": self.created,
        }


def image_facts(client: Any, tag: str) -> ImageFacts:
    """Facts of a local image; raises docker.errors.ImageNotFound when it is absent."""
    image = client.images.get(tag)
    attrs = image.attrs
    labels = dict(attrs.get("Config", {}).get("Labels") or {})
    base = labels.get(f"{LABEL_PREFIX}.base", "")
    return ImageFacts(
        tag=tag,
        image_id=str(image.id),
        repo_digests=tuple(attrs.get("RepoDigests") or ()),
        base_image=base,
        base_digest=base.split("@", 1)[1] if "@" in base else None,
        labels=labels,
        created=str(attrs.get("Created", "")),
        layers=tuple((attrs.get("RootFS") or {}).get("Layers") or ()),
    )


@dataclasses.dataclass(frozen=True)
class PinStatus:
    pinned: bool
    how: str  # "digest" | "local-base" | "unpinned"
    reason: str | None  # why not pinned (None when pinned)
    base_image_id: str | None = None  # the local base's id, when pinned by layers
    base_layers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "pinned": self.pinned,
            "pin": self.how,
            "unpinned_reason": self.reason,
            "base_image_id": self.base_image_id,
            "base_layers": list(self.base_layers),
        }


def local_bases() -> dict[str, Any]:
    """The lock's bases the project builds itself: tag -> how they are built."""
    found = read_lock().get("local_bases") or {}
    return dict(found) if isinstance(found, dict) else {}


def pin_status(
    facts: ImageFacts, spec: ImageSpec, variant: Variant, client: Any = None
) -> PinStatus:
    """Whether `facts` is pinned, and how (see the module docstring). `client` (a docker
    client) is needed only to check an image built from a local base."""
    if facts.base_image in local_bases():
        return _local_pin(facts, client)
    reason = unpinned_reason(facts, spec, variant)
    return PinStatus(reason is None, "digest" if reason is None else "unpinned", reason)


def _local_pin(facts: ImageFacts, client: Any) -> PinStatus:
    base = facts.base_image
    if client is None:
        return PinStatus(False, "unpinned", f"the local base {base} was not checked (no daemon)")
    import docker.errors

    import docker  # lazy: see kit/images/__init__.py

    try:
        present = image_facts(client, base)
    except docker.errors.ImageNotFound:
        return PinStatus(
            False,
            "unpinned",
            f"{facts.tag} was built from the local base {base}, which is no longer present "
            "to check against (scripts/build-base-image, then rebuild the image)",
        )
    n = len(present.layers)
    if n == 0 or facts.layers[:n] != present.layers:
        return PinStatus(
            False,
            "unpinned",
            f"{facts.tag} was built from another {base} than the one present now "
            f"({present.image_id[:19]}): rebuild it (kit images build {facts.tag})",
        )
    return PinStatus(True, "local-base", None, present.image_id, present.layers)


def unpinned_reason(facts: ImageFacts, spec: ImageSpec, variant: Variant) -> str | None:
    """None when the image was built from the base the lock pins; else one sentence why not."""
    want = pinned_base(spec, variant)
    if want is None:
        return (
            f"the lock has no digest for the base of {spec.name}:{variant.name} "
            "(docker/images.lock.json)"
        )
    if facts.base_image != want:
        return f"{facts.tag} was built from {facts.base_image or 'an unknown base'}, not {want}"
    return None


def image_fingerprint(client: Any, facts: ImageFacts) -> dict[str, Any]:
    """The JSON the image wrote at build time ({} when it has none)."""
    if facts.image_id in _fingerprints:
        return _fingerprints[facts.image_id]
    import docker.errors

    import docker  # lazy: see kit/images/__init__.py

    container = client.containers.create(facts.image_id, entrypoint=["true"], network_mode="none")
    try:
        chunks, _ = container.get_archive(FINGERPRINT_PATH)
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
            member = archive.extractfile(archive.getmembers()[0])
            found: dict[str, Any] = json.loads(member.read()) if member else {}
    except docker.errors.NotFound:
        found = {}
    finally:
        container.remove(force=True)
    _fingerprints[facts.image_id] = found
    return found
