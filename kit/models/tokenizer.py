"""Prompts as token ids, with the model's own tokenizer where the kit can find it.

Where a tokenizer comes from, first found wins:
- gpt2: `$KIT_GPT2_TOKENIZER_DIR` (vocab.json + merges.txt), then the folder registered with
  `kit models prepare --tokenizer DIR` (copied into the cache), then the copy shipped with the
  kit (`kit/models/data/gpt2`, package data: every image carries it), then the hub
  (openai-community/gpt2, downloaded once into the cache). Local first: the files are the same
  GPT-2 BPE data, and a benchmark should not wait on the network.
- qwen2: a registered tokenizer.json, then the hub (Qwen/Qwen2.5-0.5B: every Qwen2.5 size
  shares one tokenizer).
Either is built with the `tokenizers` package (no transformers here) and is exact.

With none of these, `approximate_ids` is the fallback, and results say "approximate": the text
is split like GPT-2's pre-tokenizer (optional leading space + a run of letters, of digits, or of
other symbols; whitespace runs), pieces longer than 8 characters are cut into 8-character
chunks, and each chunk maps to sha256(chunk) mod the first special id. Deterministic, never a
special token, counts in the right range (the stress prompt: 50 vs 51 exact; the README's
9-token sentence: 8).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from kit.errors import KitError
from kit.matrix.models import get_model
from kit.models import hub
from kit.models.cache import tokenizer_dir

GPT2_ENV = "KIT_GPT2_TOKENIZER_DIR"
GPT2_FILES = ("vocab.json", "merges.txt")
QWEN2_FILES = ("tokenizer.json",)
# The GPT-2 BPE data shipped as package data (MIT; see its README.md).
PACKAGED_GPT2 = Path(__file__).resolve().parent / "data" / "gpt2"
HUB_REPO = {"gpt2": "openai-community/gpt2", "qwen2": "Qwen/Qwen2.5-0.5B"}
# First special-token id: regular tokens are below it (fallback ids stay there too).
FIRST_SPECIAL = {"gpt2": 50256, "qwen2": 151643, None: 32000}
STRESS_PROMPT = " ".join(["latency"] * 50)
_PIECES = re.compile(r" ?[^\W\d_]+| ?\d+| ?[^\s\w]+|_+|\s+(?!\S)|\s+")
_MAX_PIECE = 8


@dataclass(frozen=True)
class Tokenized:
    ids: list[int]
    method: str  # "exact" or "approximate"
    source: str  # where the tokenizer came from, or why there was none


def _files_in(folder: Path, names: tuple[str, ...]) -> bool:
    return all((folder / name).is_file() for name in names)


@functools.lru_cache(maxsize=8)
def _load(kind: str, folder: str) -> Tokenizer:
    path = Path(folder)
    try:
        if kind == "gpt2":
            bpe = models.BPE.from_file(str(path / "vocab.json"), str(path / "merges.txt"))
            tok = Tokenizer(bpe)
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            return tok
        return Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as err:  # tokenizers raises plain Exceptions for bad files
        raise KitError(f"cannot read the {kind} tokenizer in {path}: {err}", "") from err


def _from_hub(kind: str) -> tuple[Path, str] | None:
    if not hub.hub_reachable():
        return None
    dest = tokenizer_dir(kind)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=dest.parent))
    try:
        names = list(GPT2_FILES if kind == "gpt2" else QWEN2_FILES)
        commit = hub.download_files(HUB_REPO[kind], names, staging)
        for name in names:
            os.replace(staging / name, _ensure(dest) / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest, f"hub:{HUB_REPO[kind]}@{commit}"


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def tokenizer_folder(kind: str) -> tuple[Path, str] | None:
    """The folder holding the exact `kind` tokenizer's files ("gpt2": vocab.json + merges.txt,
    "qwen2": tokenizer.json) and its source, first found wins (see the module docstring), or
    None. Raises KitError when $KIT_GPT2_TOKENIZER_DIR names a folder without the files."""
    names = GPT2_FILES if kind == "gpt2" else QWEN2_FILES
    if kind == "gpt2" and os.environ.get(GPT2_ENV):
        folder = Path(os.environ[GPT2_ENV]).expanduser()
        if not _files_in(folder, names):
            raise KitError(
                f"{GPT2_ENV}={folder} does not hold vocab.json and merges.txt",
                f"point {GPT2_ENV} at a GPT-2 tokenizer folder, or unset it",
            )
        return folder.resolve(), f"{GPT2_ENV}:{folder}"
    registered = tokenizer_dir(kind)
    if _files_in(registered, names):
        return registered, f"cache:{registered}"
    if kind == "gpt2" and _files_in(PACKAGED_GPT2, names):
        return PACKAGED_GPT2, f"package:{PACKAGED_GPT2}"
    return _from_hub(kind)


def find_tokenizer(kind: str | None) -> tuple[Tokenizer | None, str]:
    """The exact tokenizer of `kind` ("gpt2", "qwen2") and its source, or (None, why not)."""
    if kind is None:
        return None, "no tokenizer: the backend tokenizes (an Ollama tag)"
    found = tokenizer_folder(kind)
    if found is not None:
        return _load(kind, str(found[0])), found[1]
    hint = f"set {GPT2_ENV} or " if kind == "gpt2" else ""
    return None, f"no {kind} tokenizer found ({hint}run `kit models prepare --tokenizer DIR`)"


def approximate_ids(text: str, first_special: int) -> list[int]:
    """The documented fallback (see the module docstring): deterministic ids below
    `first_special`."""
    ids = []
    for piece in _PIECES.findall(text):
        for start in range(0, len(piece), _MAX_PIECE):
            chunk = piece[start : start + _MAX_PIECE].encode("utf-8")
            ids.append(int.from_bytes(hashlib.sha256(chunk).digest()[:8], "big") % first_special)
    return ids


def tokenize(model_id: str, text: str) -> Tokenized:
    """`text` as token ids of `model_id`'s tokenizer, without special tokens.

    Raises KitError for an unknown model or a broken tokenizer folder; a missing tokenizer is
    not an error: the result is approximate and its source says why."""
    kind = get_model(model_id).tokenizer
    tok, source = find_tokenizer(kind)
    if tok is None:
        return Tokenized(approximate_ids(text, FIRST_SPECIAL[kind]), "approximate", source)
    return Tokenized(tok.encode(text, add_special_tokens=False).ids, "exact", source)


def exact_length_tokens(model_id: str, n: int, seed: int = 42) -> Tokenized:
    """Exactly `n` ids for a TR147 token_len cell: the stress prompt's tokens ("latency" x 50,
    TR117's stress scenario), repeated and cut to `n`. Never a special token.

    The ids do not depend on `seed` (every cell of a sweep sees the same text, only its
    length varies); it is accepted so callers can pass the cell's seed uniformly.
    Raises KitError for n < 1.
    """
    del seed
    if n < 1:
        raise KitError(f"token length must be at least 1, got {n}", "use a positive token_len")
    base = tokenize(model_id, STRESS_PROMPT)
    ids = (base.ids * (n // len(base.ids) + 1))[:n]
    return Tokenized(ids, base.method, base.source)


def exact_length_ids(model_id: str, n: int, seed: int = 42) -> list[int]:
    """The ids of `exact_length_tokens` (exactly `n` of them)."""
    return exact_length_tokens(model_id, n, seed).ids


@dataclass(frozen=True)
class RegisteredTokenizer:
    kind: str
    path: Path
    files: list[str]
    vocab_size: int


def _kind_of_folder(folder: Path) -> str:
    if _files_in(folder, GPT2_FILES):
        return "gpt2"
    if _files_in(folder, QWEN2_FILES):
        return "qwen2"
    raise KitError(
        f"{folder} holds no tokenizer files",
        "a GPT-2 tokenizer folder has vocab.json and merges.txt; a Qwen2.5 one tokenizer.json",
    )


def register_tokenizer(folder: Path, kind: str | None = None) -> RegisteredTokenizer:
    """Validate the tokenizer in `folder` and copy its files into the cache, where
    `find_tokenizer` finds them from then on. `kind` ("gpt2", "qwen2") defaults to what the
    files look like. Raises KitError for a missing folder, missing files or a wrong vocab."""
    if not folder.is_dir():
        raise KitError(f"tokenizer folder {folder} does not exist", "pass a folder")
    kind = kind or _kind_of_folder(folder)
    names = GPT2_FILES if kind == "gpt2" else QWEN2_FILES
    if not _files_in(folder, names):
        raise KitError(f"{folder} lacks {' or '.join(names)} for a {kind} tokenizer", "")
    vocab_size = _load(kind, str(folder.resolve())).get_vocab_size(with_added_tokens=True)
    expected = {"gpt2": (50257, 50257), "qwen2": (151643, 151936)}[kind]
    if not expected[0] <= vocab_size <= expected[1]:
        raise KitError(
            f"{folder}: a {kind} tokenizer with {vocab_size} tokens",
            f"the {kind} models need {expected[0]}..{expected[1]}: is this the right tokenizer?",
        )
    dest = _ensure(tokenizer_dir(kind))
    for name in names:
        staged = dest / f".{name}.partial"
        shutil.copyfile(folder / name, staged)
        os.replace(staged, dest / name)
    return RegisteredTokenizer(kind, dest, list(names), vocab_size)
