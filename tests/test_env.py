"""Environment fingerprints and redaction: a planted secret never reaches a written file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kit.cli import main
from kit.env import REDACTED, host_fingerprint, redact, redact_text, relevant_env, write_env
from kit.env.host import container_info, installed_packages
from kit.gpu import nvml

SECRET = "hf_PlantedSecretValue0123456789abcdef"


def test_secret_names_are_redacted_and_relevant_prefixes_kept() -> None:
    env = {
        "HF_TOKEN": SECRET,
        "CUDA_VISIBLE_DEVICES": "0",
        "TORCH_LOGS": "recompiles",
        "KIT_API_KEY": "abcd1234",
        "OMP_NUM_THREADS": "4",
        "HOME": "/root",
        "TRITON_CACHE_DIR": "/tmp/t",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
    }
    out = relevant_env(env)
    assert out["HF_TOKEN"] == REDACTED and out["KIT_API_KEY"] == REDACTED
    assert out["CUDA_VISIBLE_DEVICES"] == "0" and out["OMP_NUM_THREADS"] == "4"
    assert out["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert "HOME" not in out and list(out) == sorted(out)


def test_redact_text_covers_urls_pairs_and_values() -> None:
    env = {"HF_TOKEN": SECRET}
    text = (
        f"pkg @ git+https://alice:pw0rd@git.example/x.git\nmirror=https://{SECRET}@hub/\n"
        f"copied={SECRET}\npassword: hunter22\ntokenizers==0.19.1\nkeyring==25.0\n"
    )
    out = redact_text(text, env)
    assert SECRET not in out and "pw0rd" not in out and "hunter22" not in out
    assert "https://<redacted>@git.example/x.git" in out
    assert "tokenizers==0.19.1" in out and "keyring==25.0" in out  # versions survive


def test_redact_object_keys_and_nested_strings() -> None:
    env = {"MY_SECRET": "s3cr3t-value"}
    obj = {"aws_secret_access_key": "x", "nested": ["ok", "has s3cr3t-value inside"], "n": 3}
    out = redact(obj, env)
    assert out["aws_secret_access_key"] == REDACTED
    assert out["nested"] == ["ok", f"has {REDACTED} inside"] and out["n"] == 3


def test_host_fingerprint_fields() -> None:
    record = host_fingerprint(packages=False)
    for key in ("os", "kernel", "cpu", "memory_mib", "python", "container", "env"):
        assert key in record
    assert record["cpu"]["logical_cores"] == os.cpu_count()
    assert record["python"]["version"].startswith(f"{sys.version_info[0]}.")
    assert any(line.startswith("numpy==") for line in installed_packages())


def test_container_image_from_env(monkeypatch) -> None:
    monkeypatch.setenv("KIT_IMAGE_ID", "sha256:abc")
    monkeypatch.setenv("KIT_IMAGE_DIGEST", "kit@sha256:def")
    info = container_info()
    assert info["image_id"] == "sha256:abc" and info["image_digest"] == "kit@sha256:def"


def test_planted_hf_token_never_reaches_any_file(tmp_path: Path, monkeypatch, capsys) -> None:
    # a fake nvidia-smi that echoes the secret: even tool output is scrubbed
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\necho '<nvidia_smi_log><x>{SECRET}</x></nvidia_smi_log>'\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("HF_ENDPOINT", f"https://user:{SECRET}@hub.example")
    monkeypatch.setenv("KIT_NOTE", f"copied {SECRET}")
    monkeypatch.setenv(nvml.FAKE_ENV, "h100")
    nvml.shutdown()
    run_dir = tmp_path / "run"
    written = write_env(run_dir)
    assert set(written) == {"host", "gpu", "nvidia_smi"}
    assert main(["env", "--write", str(tmp_path / "run2")]) == 0
    assert main(["env", "--json"]) == 0
    printed = capsys.readouterr().out
    nvml.shutdown()
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent != bin_dir]
    assert len(files) >= 6
    for path in files:
        assert SECRET not in path.read_text(errors="replace"), path
    assert SECRET not in printed
    host = json.loads((run_dir / "env" / "host.json").read_text())
    assert host["env"]["HF_TOKEN"] == REDACTED
    assert "hub.example" in host["env"]["HF_ENDPOINT"]
    gpu = json.loads((run_dir / "env" / "gpu.json").read_text())
    assert gpu["gpus"][0]["name"] == "NVIDIA H100 80GB HBM3"


def test_ml_stack_reports_torch_inside_the_process() -> None:
    pytest.importorskip("torch")
    code = "import json; from kit.env import ml_stack; print(json.dumps(ml_stack()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    record = json.loads(out.stdout)
    assert record["torch"] and "cudnn_benchmark" in record["flags"]
    assert "cuda_matmul_allow_tf32" in record["flags"]


def test_kit_env_summary(capsys, monkeypatch) -> None:
    monkeypatch.setenv(nvml.FAKE_ENV, "none")
    nvml.shutdown()
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    nvml.shutdown()
    assert "python" in out and "gpus          none (NVML works but reports no GPU" in out
