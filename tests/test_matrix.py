from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from kit.cli import main
from kit.matrix import Cell, load_matrix, parse_selection, select_cells
from kit.matrix.select import SelectionError
from kit.matrix.validate import MatrixError

GOOD = """
schema: 1
id: mine
title: a small matrix
groups:
  - id: g1
    backends:
      - {backend: transformers-eager, label: eager, device: cpu}
      - backend: transformers-compile
        device: cpu
        compile: {mode: default}
    models: [gpt2-25m]
    scenarios: [single_micro]
    modes: [prefill, kv_decode]
    repetitions: 2
    warmup: 1
    max_new_tokens: 4
"""


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_tr126_phase2_has_every_cell() -> None:
    matrix = load_matrix("tr126")
    phase2 = [c for c in matrix.cells if c.group.startswith("phase2-")]
    assert {c.repetitions for c in phase2} == {30}
    assert {c.warmup for c in phase2} == {3}
    assert {c.max_new_tokens for c in phase2} == {64}
    baseline = [c for c in phase2 if c.group == "phase2-baseline"]
    hf_models = {"gpt2-25m", "gpt2-50m", "gpt2-100m", "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b"}
    assert {c.model for c in baseline} == hf_models
    assert {c.mode for c in baseline} == {"prefill", "kv_decode", "e2e_kv"}
    assert {c.backend for c in baseline} == {"transformers-eager", "transformers-compile"}
    # the fp16 ablation exists in the baseline config only
    assert any(c.model == "gpt2-100m" and c.dtype == "fp16" for c in baseline)
    assert not any(
        c.model == "gpt2-100m" and c.dtype == "fp16" for c in phase2 if c.group != "phase2-baseline"
    )
    # 7 model/dtype pairs x 2 backends x 9 prompts (micro 2, short 2, medium 2, long 2, stress 1) x 3
    assert len(baseline) == 7 * 2 * 9 * 3
    dynamic = [c for c in phase2 if c.group == "phase2-dynamic" and c.compile]
    assert {c.compile["dynamic"] for c in dynamic} == {True}
    padded = [c for c in phase2 if c.group == "phase2-padded"]
    assert {c.pad_to_multiple for c in padded} == {8} and {c.cudagraphs for c in padded} == {False}


def test_tr117_and_tr147_encode_the_protocols() -> None:
    tr117 = load_matrix("tr117")
    local = [c for c in tr117.cells if c.group == "tier3-local"]
    assert {c.backend_label for c in local} == {
        "transformers-cpu",
        "transformers-cpu-compile",
        "transformers-gpu",
        "transformers-gpu-compile",
        "onnxruntime",
        "tensorrt",
    }
    assert {c.quantization for c in local} == {"fp32", "fp16", "int8"}
    assert len({c.scenario for c in tr117.cells}) == 9
    assert {c.mode for c in tr117.cells} == {"generate"}
    assert {(c.repetitions, c.seed, c.max_new_tokens) for c in tr117.cells} == {(7, 42, 128)}
    assert {c.sampling["temperature"] for c in tr117.cells} == {0.7}
    assert {c.batch_size for c in tr117.cells if c.scenario.startswith("batch")} == {4}
    assert {c.concurrency for c in tr117.cells if c.scenario.startswith("dual")} == {2}
    assert {c.model for c in tr117.cells if c.backend == "ollama"} >= {"qwen2.5:7b", "gemma3:270m"}
    tr147 = load_matrix("tr147")
    assert {c.token_len for c in tr147.cells} == {1, 8, 32, 128, 512}
    assert {(c.repetitions, c.warmup) for c in tr147.cells} == {(60, 3)}
    v4a = [c for c in tr147.cells if c.group.startswith("v4a")]
    assert {c.cache for c in v4a} == {"static"}
    assert {c.compile["mode"] for c in v4a if c.compile} == {"default", "reduce-overhead"}


def test_published_values_sit_beside_their_cells() -> None:
    matrix = load_matrix("tr126")
    pubs = [
        p
        for p in matrix.published
        if p.group == "phase2-dynamic" and p.match.get("model") == "gpt2-25m"
    ]
    assert sorted(p.value for p in pubs) == [0.73, 1.81]
    for pub in matrix.published:
        group_cells = [c for c in matrix.cells if c.group == pub.group]
        sel = parse_selection(",".join(f"{k}={v}" for k, v in pub.match.items()))
        assert select_cells(group_cells, sel), f"published value matches no cell: {pub}"


def test_ids_are_stable_and_unique() -> None:
    cells = load_matrix("tr147").cells
    assert len({c.id for c in cells}) == len(cells)
    # the same cell gets the same id in a fresh interpreter (no per-process hash seed)
    code = "from kit.matrix import load_matrix; print(load_matrix('tr147').cells[5].id)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == cells[5].id
    again = Cell.from_dict(json.loads(json.dumps(cells[5].to_dict())))
    assert again.id == cells[5].id


def test_selection_syntax() -> None:
    cells = load_matrix("tr126").cells
    chosen = select_cells(
        cells, parse_selection("model=gpt2-*,mode=prefill,backend=transformers-compile")
    )
    assert chosen and all(c.model.startswith("gpt2-") and c.mode == "prefill" for c in chosen)
    both = select_cells(cells, parse_selection("mode=kv_decode|e2e_kv,group=phase2-baseline"))
    assert {c.mode for c in both} == {"kv_decode", "e2e_kv"}
    assert select_cells(cells, parse_selection("compile.dynamic=true")) == [
        c for c in cells if c.compile and c.compile["dynamic"] is True
    ]
    with pytest.raises(SelectionError, match="unknown selection key 'modle'"):
        select_cells(cells, parse_selection("modle=gpt2-25m"))
    with pytest.raises(SelectionError, match="bad selection term"):
        parse_selection("model")


def test_user_matrix_file(tmp_path: Path) -> None:
    matrix = load_matrix(str(write(tmp_path, GOOD)))
    assert len(matrix.cells) == 2 * 2 * 2  # backends x micro prompts x modes
    assert Counter(c.backend for c in matrix.cells) == {
        "transformers-eager": 4,
        "transformers-compile": 4,
    }


BROKEN = [
    (
        "unknown top key",
        GOOD + "colour: blue\n",
        "(top).colour: got 'colour'; expected one of the keys",
    ),
    ("bad schema", GOOD.replace("schema: 1", "schema: 7"), "schema: got 7; expected 1"),
    (
        "unknown backend",
        GOOD.replace("transformers-eager", "pytorch"),
        "groups[0] (g1).backends[0].backend: got 'pytorch'",
    ),
    (
        "unknown model",
        GOOD.replace("[gpt2-25m]", "[gpt2-26m]"),
        "models[0].model: got 'gpt2-26m'; expected a model of the registry",
    ),
    (
        "bad reps",
        GOOD.replace("repetitions: 2", "repetitions: 0"),
        "repetitions: got 0; expected timed repetitions",
    ),
    (
        "bad mode",
        GOOD.replace("[prefill, kv_decode]", "[prefil]"),
        "modes[0]: got 'prefil'; expected one of prefill",
    ),
    (
        "unknown scenario",
        GOOD.replace("[single_micro]", "[single_tiny]"),
        "scenarios[0]: got 'single_tiny'",
    ),
    (
        "unknown group key",
        GOOD.replace("    warmup: 1", "    warmups: 1"),
        "groups[0].warmups: got 'warmups'",
    ),
    (
        "compile without settings",
        GOOD.replace("        compile: {mode: default}\n", ""),
        "backends[1].compile: got None",
    ),
    (
        "bad compile mode",
        GOOD.replace("{mode: default}", "{mode: turbo}"),
        "compile.mode: got 'turbo'",
    ),
    (
        "bad device",
        GOOD.replace("device: cpu}", "device: tpu}"),
        "backends[0].device: got 'tpu'; expected one of cpu, cuda",
    ),
    ("not yaml", "schema: 1\n  id: [x\n", "not valid YAML at line"),
    ("not a mapping", "- 1\n- 2\n", "(top): got [1, 2]; expected a mapping"),
]


@pytest.mark.parametrize(("name", "text", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_matrix_files_name_file_path_and_fix(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = write(tmp_path, text, f"{name.replace(' ', '_')}.yaml")
    with pytest.raises(MatrixError) as info:
        load_matrix(str(path))
    assert str(path) in info.value.title
    assert message in info.value.title


def test_cli_show_json_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert (
        main(
            ["matrix", "show", "tr126", "--json", "--select", "group=phase2-dynamic,model=gpt2-25m"]
        )
        == 0
    )
    cells = json.loads(capsys.readouterr().out)
    assert cells and {
        "id",
        "matrix",
        "group",
        "backend",
        "device",
        "model",
        "dtype",
        "scenario",
        "mode",
        "repetitions",
        "warmup",
        "max_new_tokens",
        "compile",
    } <= set(cells[0])
    assert main(["matrix", "show", "tr126", "--select", "model=nothing"]) == 1
    assert "matches no cell" in capsys.readouterr().err
    bad = write(tmp_path, GOOD.replace("schema: 1", "schema: 9"))
    assert main(["matrix", "show", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert main(["matrix", "list"]) == 0
    assert "tr147" in capsys.readouterr().out
