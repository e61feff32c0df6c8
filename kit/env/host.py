"""What the machine was: OS, kernel, CPU, memory, Python, packages, container, Docker.

Reads files and asks cheap questions only; every probe that can fail yields None instead
of raising, so a fingerprint never stops a run. Redaction happens where records are written
(`kit.env.write`), and `host_fingerprint` already returns redacted environment variables.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from kit.env.redact import redact_text, relevant_env


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _os_release() -> str | None:
    text = _read("/etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def cpu_info() -> dict[str, Any]:
    text = _read("/proc/cpuinfo") or ""
    model = None
    cores: set[tuple[str, str]] = set()
    physical = core = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and model is None:
            model = value
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
            cores.add((physical, core))
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    cpufreq = "/sys/devices/system/cpu/cpu0/cpufreq/"
    max_khz = (_read(cpufreq + "cpuinfo_max_freq") or "").strip()
    return {
        "model": model or platform.processor() or None,
        "logical_cores": os.cpu_count(),
        "physical_cores": len(cores) or None,
        "usable_cores": usable,
        "governor": (_read(cpufreq + "scaling_governor") or "").strip() or None,
        "max_mhz": int(max_khz) // 1000 if max_khz.isdigit() else None,
    }


def memory_mib() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return None


def container_info() -> dict[str, Any]:
    """Whether we run in a container, and the image when the kit's images said so."""
    markers = []
    if Path("/.dockerenv").exists():
        markers.append("/.dockerenv")
    if Path("/run/.containerenv").exists():
        markers.append("/run/.containerenv")
    cgroup = _read("/proc/1/cgroup") or ""
    if any(word in cgroup for word in ("docker", "kubepods", "containerd", "libpod", "lxc")):
        markers.append("/proc/1/cgroup")
    return {
        "in_container": bool(markers),
        "evidence": markers,
        "image_id": os.environ.get("KIT_IMAGE_ID") or None,
        "image_digest": os.environ.get("KIT_IMAGE_DIGEST") or None,
    }


def docker_version(timeout_s: float = 2.0) -> str | None:
    """The Docker engine's version from its socket (no docker package needed), or None."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return None
    path = host.removeprefix("unix://")
    if not Path(path).exists():
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        body = data.split(b"\r\n\r\n", 1)[1]
        return str(json.loads(body).get("Version")) or None
    except (OSError, ValueError, IndexError):
        return None


def installed_packages() -> list[str]:
    """`pip freeze`-like lines (name==version, or name @ url), sorted, URLs redacted."""
    lines = set()
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        url = None
        direct = dist.read_text("direct_url.json")
        if direct:
            try:
                info = json.loads(direct)
                if not info.get("dir_info", {}).get("editable"):
                    url = info.get("url")
            except ValueError:
                pass
        lines.add(redact_text(f"{name} @ {url}" if url else f"{name}=={dist.version}"))
    return sorted(lines, key=str.lower)


def nvidia_smi_xml(timeout_s: float = 30.0) -> str | None:
    """`nvidia-smi -q -x` output when the tool exists and answers, else None."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return None
    try:
        done = subprocess.run([tool, "-q", "-x"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 and done.stdout.strip() else None


def host_fingerprint(packages: bool = True) -> dict[str, Any]:
    """The host record (`env/host.json`). `packages=False` skips the package list."""
    return {
        "schema": 1,
        "os": _os_release() or platform.platform(),
        "platform": platform.platform(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu": cpu_info(),
        "memory_mib": memory_mib(),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "container": container_info(),
        "docker_version": docker_version(),
        "nvidia_smi": shutil.which("nvidia-smi"),
        "env": relevant_env(),
        "packages": installed_packages() if packages else None,
    }
