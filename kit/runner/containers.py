"""Container runtimes on a cluster: the batch-script lines that run one array task in the
kit's image through pyxis/enroot or Apptainer (neither is installed here: the generated
commands are what the tests check).

Each image is converted once per source digest into a shared cache, under `flock`, so that
array tasks starting together on many nodes do not import it twice; the sha256 of the
`.sqsh`/`.sif` is computed once beside it and exported to the task, which records it with
the source digest in its fingerprint (`env/container.json`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import tarfile
from pathlib import Path

from kit.errors import KitError

RUNTIMES = ("host", "pyxis", "apptainer")
DIGEST = re.compile(r"@(sha256:[0-9a-f]{64})$")


@dataclasses.dataclass(frozen=True)
class Runtime:
    """How an array task runs the kit: on the host, or in an image (`source`, its digest)."""

    name: str = "host"
    source: str | None = None  # pyxis: a docker reference; apptainer: a docker-archive tar
    source_digest: str | None = None
    cache: str | None = None  # shared folder for .sqsh/.sif files
    mounts: tuple[str, ...] = ()  # SRC:DST, besides the sweep folder itself

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @property
    def image_file(self) -> str | None:
        if self.name == "host" or not self.cache or not self.source_digest:
            return None
        ext = "sqsh" if self.name == "pyxis" else "sif"
        return f"{self.cache}/{self.source_digest.replace(':', '-')}.{ext}"


def archive_image_id(archive: Path) -> str:
    """The image id (sha256 of its config) of a `docker save` archive, read from its
    manifest.json. Raises KitError when the file is not such an archive."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("manifest.json")
            manifest = json.load(member) if member else None
    except (OSError, tarfile.TarError, KeyError, ValueError) as err:
        raise KitError(
            f"{archive} is not a docker-archive (docker save) file: {err}",
            "make one with `docker save IMAGE -o FILE.tar`",
        ) from None
    config = str(manifest[0].get("Config", "")) if isinstance(manifest, list) and manifest else ""
    hexpart = re.search(r"([0-9a-f]{64})", config)
    if not hexpart:
        raise KitError(f"{archive}: manifest.json names no image config", "re-save the image")
    return f"sha256:{hexpart.group(1)}"


def resolve_runtime(
    name: str, image: str | None, cache: str | None, mounts: tuple[str, ...], sweep: Path
) -> Runtime:
    """Check the options of `--runtime NAME` and return the runtime; KitError names the fix."""
    if name not in RUNTIMES:
        raise KitError(f"unknown runtime {name!r}", "use --runtime host, pyxis or apptainer")
    if name == "host":
        if image:
            raise KitError("--image is for --runtime pyxis or apptainer", "drop --image")
        return Runtime()
    if not image:
        example = "REGISTRY/IMAGE@sha256:..." if name == "pyxis" else "kit-torch.tar"
        raise KitError(f"--runtime {name} needs --image", f"e.g. --image {example}")
    for mount in mounts:
        if ":" not in mount:
            raise KitError(
                f"--mount {mount!r} is not SRC:DST", "e.g. --mount /scratch/kit-cache:/cache"
            )
    folder = cache or str(sweep / "images")
    if name == "pyxis":
        match = DIGEST.search(image)
        if not match:
            raise KitError(
                f"--image {image!r} has no digest",
                "pin the image: --image REGISTRY/IMAGE@sha256:<digest> (docker inspect --format '{{index .RepoDigests 0}}' IMAGE)",
            )
        return Runtime(name, image, match.group(1), folder, mounts)
    archive = Path(image).resolve()
    return Runtime(name, str(archive), archive_image_id(archive), folder, mounts)


def enroot_uri(reference: str) -> str:
    """A docker reference as enroot spells it: `docker://REGISTRY#PATH@DIGEST`."""
    first, _, rest = reference.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return f"docker://{first}#{rest}"
    return f"docker://{reference}"


def prologue(runtime: Runtime) -> list[str]:
    """Script lines that make the image file once (under flock) and export its facts."""
    if runtime.name == "host":
        return ["export KIT_CONTAINER_RUNTIME=host"]
    image = runtime.image_file
    assert image is not None and runtime.source is not None
    q = shlex.quote
    if runtime.name == "pyxis":
        make = f'enroot import --output "$part" {q(enroot_uri(runtime.source))}'
    else:
        make = f'apptainer build "$part" {q("docker-archive:" + runtime.source)}'
    return [
        f"IMAGE_FILE={q(image)}",
        'mkdir -p "$(dirname "$IMAGE_FILE")"',
        "# One import per digest: the first task makes it, the others wait on the lock.",
        "(",
        "  flock -x 9",
        '  if [ ! -s "$IMAGE_FILE" ] || [ ! -s "$IMAGE_FILE.sha256" ]; then',
        '    part="$IMAGE_FILE.part.${SLURM_JOB_ID:-$$}"',
        f'    {make} && mv -f "$part" "$IMAGE_FILE" || exit 1',
        '    sha256sum "$IMAGE_FILE" | cut -d" " -f1 > "$IMAGE_FILE.sha256" || exit 1',
        "  fi",
        ') 9>"$IMAGE_FILE.lock" || { echo "kit: making $IMAGE_FILE failed" >&2; exit 1; }',
        f"export KIT_CONTAINER_RUNTIME={runtime.name}",
        f"export KIT_CONTAINER_SOURCE={q(runtime.source)}",
        f"export KIT_CONTAINER_SOURCE_DIGEST={q(runtime.source_digest or '')}",
        'export KIT_CONTAINER_IMAGE_FILE="$IMAGE_FILE"',
        'export KIT_CONTAINER_IMAGE_SHA256="$(cat "$IMAGE_FILE.sha256")"',
    ]


def wrap(runtime: Runtime, kit_argv: list[str], sweep: Path) -> str:
    """The command line that runs `kit_argv` (a `python -m kit ...` list) in the runtime."""
    q = shlex.quote
    if runtime.name == "host":
        return " ".join(q(a) for a in kit_argv)
    binds = ",".join([f"{sweep}:{sweep}", *runtime.mounts])
    inner = " ".join(q(a) for a in ["python", *kit_argv[1:]])  # the image's own interpreter
    if runtime.name == "pyxis":
        return (
            f'srun --ntasks=1 --container-image="$IMAGE_FILE" --container-mounts={q(binds)} {inner}'
        )
    return f'apptainer exec --nv --bind {q(binds)} "$IMAGE_FILE" {inner}'
