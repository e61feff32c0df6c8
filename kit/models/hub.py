"""Downloads from the Hugging Face hub, through huggingface_hub (imported lazily).

Real code, kept for users with internet. Where the hub cannot be reached (no network,
`HF_HUB_OFFLINE`, a proxy that refuses) every entry point raises one KitError,
"hub unreachable ...", whose hint names the offline alternative. Reachability is probed once
per process with a short timeout in a daemon thread, so a hanging DNS lookup cannot hang us.
"""

from __future__ import annotations

import functools
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kit.errors import KitError

PROBE_TIMEOUT_S = 3.0
DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class HubSnapshot:
    repo_id: str
    revision: str  # the commit the hub resolved the requested revision to
    path: Path
    files: list[str]


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def offline_reason() -> str | None:
    """Why the hub must not be used, from the environment alone (no network)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return f"{name} is set"
    return None


@functools.lru_cache(maxsize=8)
def _probe(url: str, timeout_s: float) -> str | None:
    outcome: list[str | None] = [f"no answer within {timeout_s:.0f} s"]

    def attempt() -> None:
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                outcome[0] = None if response.status < 400 else f"HTTP {response.status}"
        except urllib.error.HTTPError as err:
            outcome[0] = f"HTTP {err.code}"
        except (urllib.error.URLError, OSError, ValueError) as err:
            outcome[0] = str(getattr(err, "reason", err))

    worker = threading.Thread(target=attempt, name="kit-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout_s + 0.5)
    return outcome[0]


def unreachable_reason(timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the hub answers; otherwise why not (probed at most once per process)."""
    return offline_reason() or _probe(endpoint(), timeout_s)


def hub_reachable(timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    return unreachable_reason(timeout_s) is None


def unreachable_error(reason: str) -> KitError:
    return KitError(
        f"hub unreachable ({endpoint()}: {reason})",
        "use --weights random (synthesized weights from the registry config), or run where "
        "the hub can be reached and copy the kit cache (KIT_CACHE)",
    )


def _require_hub() -> None:
    reason = unreachable_reason()
    if reason is not None:
        raise unreachable_error(reason)


def _hub_error(repo_id: str, err: Exception) -> Exception:
    """The KitError for a failed hub call; a bug (not a hub or network error) passes as is."""
    from huggingface_hub import errors

    if isinstance(err, KitError):
        return err
    if isinstance(err, errors.EntryNotFoundError):
        return KitError(f"file not found in hub repository {repo_id}: {err}", "check hub_id")
    if isinstance(err, errors.GatedRepoError):
        return KitError(
            f"{repo_id} is gated on the hub", "accept its licence, then `hf auth login`"
        )
    if isinstance(err, errors.RepositoryNotFoundError):
        return KitError(f"hub repository {repo_id} not found", "check hub_id in the registry")
    if isinstance(err, errors.RevisionNotFoundError):
        return KitError(f"revision not found in {repo_id}", "check revision in the registry")
    network = type(err).__module__.startswith(("httpx", "httpcore", "requests", "urllib3"))
    if isinstance(err, (errors.HfHubHTTPError, errors.OfflineModeIsEnabled, OSError)) or network:
        return unreachable_error(f"{type(err).__name__}: {err}")
    return err


def _weight_patterns(files: list[str]) -> list[str]:
    # Config, tokenizer and safetensors weights; pickled weights only where no safetensors.
    patterns = ["*.json", "*.txt", "*.model", "*.safetensors"]
    if not any(name.endswith(".safetensors") for name in files):
        patterns.append("*.bin")
    return patterns


def download_snapshot(repo_id: str, revision: str | None, dest: Path) -> HubSnapshot:
    """Download the model files of `repo_id` at `revision` (None: the default branch) into
    `dest`, pinned to the commit the hub resolves first. Raises KitError when unreachable."""
    _require_hub()
    from huggingface_hub import HfApi, snapshot_download

    try:
        info = HfApi(endpoint=endpoint()).model_info(repo_id, revision=revision)
        commit = str(info.sha)
        names = [sibling.rfilename for sibling in info.siblings or []]
        snapshot_download(
            repo_id,
            revision=commit,
            local_dir=dest,
            allow_patterns=_weight_patterns(names),
            etag_timeout=10,
            endpoint=endpoint(),  # huggingface_hub reads HF_ENDPOINT only once, at import
        )
    except Exception as err:
        raise _hub_error(repo_id, err) from err
    files = sorted(
        str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and ".cache" not in p.parts
    )
    return HubSnapshot(repo_id=repo_id, revision=commit, path=dest, files=files)


def download_files(repo_id: str, filenames: list[str], dest: Path) -> str:
    """Download single files (e.g. a tokenizer's) of `repo_id` into `dest`; returns the
    resolved commit. Raises KitError when unreachable or missing."""
    _require_hub()
    from huggingface_hub import HfApi, hf_hub_download

    try:
        commit = str(HfApi(endpoint=endpoint()).model_info(repo_id).sha)
        for name in filenames:
            hf_hub_download(
                repo_id, name, revision=commit, local_dir=dest, etag_timeout=10, endpoint=endpoint()
            )
    except Exception as err:
        raise _hub_error(repo_id, err) from err
    return commit
