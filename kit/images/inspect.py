"""What a built image is: id, digests, base, pin status and the fingerprint it recorded.

The fingerprint file is read with `create` + `get_archive` (the container never starts), once
per image id.
"""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from typing import Any

from kit.errors import KitError
from kit.images.lock import pinned_base
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
    )


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


def require_pinned(facts: ImageFacts, spec: ImageSpec, variant: Variant, allow: bool) -> None:
    reason = unpinned_reason(facts, spec, variant)
    if reason and not allow:
        raise KitError(
            f"image {facts.tag} is not pinned: {reason}",
            "run scripts/lock-images where the registry answers and rebuild "
            f"(kit images build {spec.name} --variant {variant.name}), or pass --allow-unpinned",
        )


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
