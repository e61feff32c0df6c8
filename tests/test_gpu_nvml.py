"""The NVML door and the fake NVML: detection in every scenario, NotSupported, lost GPUs."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
from collections.abc import Iterator

import pynvml
import pytest

from kit.errors import KitError
from kit.gpu import GpuSnapshot, GpuUnavailable, detect, fake_nvml, nvml
from kit.gpu.nvml import GpuLost
from kit.gpu.telemetry import Probe


@pytest.fixture
def use_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    def select(scenario: str) -> None:
        nvml.shutdown()
        monkeypatch.setenv(nvml.FAKE_ENV, scenario)

    yield select
    nvml.shutdown()


def test_h100_snapshot_models_the_real_card(use_fake) -> None:
    use_fake("h100")
    detection = detect()
    assert detection.reason is None
    [gpu] = detection.gpus
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.architecture == "hopper" and gpu.compute_capability == "9.0"
    assert gpu.cuda_driver_version == "13.0" and gpu.driver_version == "580.159.04"
    assert gpu.power_limit_w == 700.0 and gpu.pcie_gen == 5 and gpu.pcie_width == 16
    assert gpu.pci_bus_id == "00000000:18:00.0"  # bytes from the ctypes struct, decoded
    assert gpu.persistence_mode is True and gpu.mig_mode is False and gpu.ecc_mode is True
    assert gpu.pstate in ("P0", "P2")


def test_not_supported_becomes_none(use_fake) -> None:
    use_fake("h100")
    [gpu] = detect().gpus
    assert gpu.fan_speed_pct is None  # SXM: NotSupported
    handle = nvml.query("nvmlDeviceGetHandleByIndex", 0)
    assert nvml.query("nvmlDeviceGetFanSpeed", handle) is None
    with pytest.raises(pynvml.NVMLError_NotSupported):  # the fake raises the REAL class
        fake_nvml.nvmlDeviceGetFanSpeed(handle)


def test_snapshot_has_a_fixed_key_list(use_fake) -> None:
    use_fake("two-gpus")
    detection = detect()
    assert [g.index for g in detection.gpus] == [0, 1]
    assert detection.gpus[0].uuid != detection.gpus[1].uuid
    keys = GpuSnapshot.keys()
    assert keys[:4] == ("index", "name", "uuid", "pci_bus_id")
    for gpu in detection.gpus:
        assert tuple(gpu.to_dict()) == keys
    with pytest.raises(AttributeError):
        detection.gpus[0].name = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("scenario", "words"),
    [
        ("none", "reports no GPU"),
        ("no-driver", "driver is not loaded"),
        ("no-library", "install the NVIDIA driver"),
        ("no-permission", "permission"),
    ],
)
def test_no_gpu_gives_empty_list_and_reason(use_fake, scenario: str, words: str) -> None:
    use_fake(scenario)
    detection = detect()
    assert detection.gpus == []
    assert detection.reason is not None and words in detection.reason
    assert detection.reason.count(".") >= 1 and "\n" not in detection.reason


def test_unavailable_is_a_kit_error_with_a_hint(use_fake) -> None:
    use_fake("no-driver")
    with pytest.raises(GpuUnavailable) as info:
        nvml.library()
    assert isinstance(info.value, KitError)
    assert "nvidia-smi" in info.value.hint


def test_every_scenario_detects_without_raising(use_fake) -> None:
    for scenario in fake_nvml.SCENARIOS:
        use_fake(scenario)
        detection = detect()
        assert (detection.gpus == []) == (detection.reason is not None), scenario


def test_gpu_lost_mid_run_is_reported_not_fatal(use_fake) -> None:
    use_fake("two-gpus")
    assert len(detect().gpus) == 2
    probe = Probe(1)
    probe.read()
    fake_nvml.lose(1)
    with pytest.raises(GpuLost) as info:
        probe.read()
    assert info.value.index == 1
    detection = detect()  # the other GPU still answers
    assert [g.index for g in detection.gpus] == [0]
    assert detection.reason is not None and "GPU 1" in detection.reason


def test_lost_mid_run_scenario_loses_the_gpu_after_a_while(use_fake, monkeypatch) -> None:
    monkeypatch.setenv("KIT_NVML_FAKE_LOST_AFTER_S", "5")
    use_fake("lost-mid-run")
    probe = Probe(0)
    monkeypatch.setenv("KIT_NVML_FAKE_T", "1.0")
    assert probe.read()["power_w"] is not None
    monkeypatch.setenv("KIT_NVML_FAKE_T", "6.0")
    with pytest.raises(GpuLost):
        probe.read()


def test_fake_requires_init_like_the_real_library() -> None:
    fake_nvml.configure("h100")
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        fake_nvml.nvmlDeviceGetCount()


def test_probe_power_kind_and_frozen_time(use_fake, monkeypatch) -> None:
    monkeypatch.setenv("KIT_NVML_FAKE_T", "3.0")
    use_fake("h100")
    first, second = Probe(0).read(), Probe(0).read()
    assert first["power_kind"] == "instant"
    assert {k: v for k, v in first.items() if k != "t_ns"} == {
        k: v for k, v in second.items() if k != "t_ns"
    }
    use_fake("no-instant-power")
    assert Probe(0).read()["power_kind"] == "average"


def test_real_pynvml_without_a_driver_gives_a_reason(monkeypatch) -> None:
    if ctypes.util.find_library("nvidia-ml"):
        pytest.skip("this machine has the NVIDIA driver library")
    monkeypatch.delenv(nvml.FAKE_ENV, raising=False)
    nvml.shutdown()
    detection = detect()
    assert detection.gpus == [] and "libnvidia-ml" in (detection.reason or "")


def test_gpu_and_env_packages_import_no_torch_or_textual() -> None:
    code = (
        "import sys, kit.gpu, kit.gpu.sampler, kit.gpu.process, kit.gpu.join, kit.gpu.watch, "
        "kit.gpu.baseline, kit.env, kit.commands.gpu, kit.commands.env\n"
        "bad = [m for m in ('torch', 'textual', 'transformers', 'pynvml') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
