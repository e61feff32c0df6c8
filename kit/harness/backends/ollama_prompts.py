"""Fresh prompts for Ollama: every request gets a prompt the server has not seen.

Ollama keeps the last prompts' KV cache and reuses the longest common token prefix of a new
request, so repeating a prompt would make its prefill nearly free. The kit cannot turn that
cache off over the API; it makes the FIRST token of every request of a group process unique,
so no cached prefix can match:

- a kit model (the kit's own GGUF, its tokenizer known): the prompt's first token is replaced
  by a distinct alphabetic vocabulary token (a different one per request), the text is
  decoded from those ids and re-tokenized to check it round-trips to exactly the same ids.
  The prompt keeps its exact length, and `prompt_eval_count` must equal it: a smaller count
  is a prompt-cache hit, a different one a tokenization drift.
- a published tag (its tokenizer unknown to the kit): a distinct word and a newline are put
  in front of the text; the count cannot be predicted, so only a reported
  `prompt_eval_cached_count > 0` (newer servers) marks a cache hit.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

# Distinct first words for tags (different first letters pairs, so different first tokens in
# any BPE vocabulary that merges common words).
TAG_WORDS = tuple(
    [
        "Amber",
        "Birch",
        "Cedar",
        "Delta",
        "Ember",
        "Fjord",
        "Garnet",
        "Harbor",
        "Iris",
        "Juniper",
        "Kestrel",
        "Lagoon",
        "Meadow",
        "Nectar",
        "Orchid",
        "Pebble",
        "Quartz",
        "Raven",
        "Saffron",
        "Tundra",
        "Umber",
        "Velvet",
        "Willow",
        "Xenon",
        "Yarrow",
        "Zephyr",
        "Anchor",
        "Bramble",
        "Cobalt",
        "Dune",
        "Echo",
        "Falcon",
        "Glacier",
        "Hazel",
        "Indigo",
        "Jasper",
        "Kelp",
        "Lantern",
        "Maple",
        "Nimbus",
        "Olive",
        "Prairie",
        "Quill",
        "Ridge",
        "Summit",
        "Thistle",
        "Upland",
        "Vortex",
        "Walnut",
        "Yonder",
        "Zircon",
    ]
)


@dataclasses.dataclass(frozen=True)
class FreshPrompt:
    text: str
    expected_tokens: int | None  # None: not predictable (a published tag)
    first_token: int | None
    method: str


class FreshPrompts:
    """Hands out one fresh prompt per request; `tokenizer` is a `tokenizers.Tokenizer` of the
    kit model (None for a published tag)."""

    def __init__(self, tokenizer: Any, seed: int) -> None:
        self.tokenizer = tokenizer
        self.used = 0
        self._candidates: list[int] = []
        if tokenizer is not None:
            vocab = tokenizer.get_vocab()
            ids = sorted(i for t, i in vocab.items() if t.isascii() and t.isalpha() and len(t) >= 4)
            random.Random(seed).shuffle(ids)
            self._candidates = ids

    def _next_candidate(self) -> int:
        if self.used >= len(self._candidates):
            raise RuntimeError("ran out of distinct first tokens for fresh prompts")
        token = self._candidates[self.used]
        self.used += 1
        return token

    def next(self, ids: list[int], text: str) -> FreshPrompt:
        """A fresh prompt for `ids` (the cell's exact ids) / `text` (its text)."""
        if self.tokenizer is None:
            word = TAG_WORDS[self.used % len(TAG_WORDS)]
            lap = self.used // len(TAG_WORDS)
            self.used += 1
            prefix = word if lap == 0 else f"{word}{lap}"
            return FreshPrompt(f"{prefix}\n{text}", None, None, "distinct first word (tag)")
        for _ in range(200):
            token = self._next_candidate()
            fresh = [token, *ids[1:]]
            decoded = self.tokenizer.decode(fresh, skip_special_tokens=False)
            again = self.tokenizer.encode(decoded, add_special_tokens=False).ids
            if again == fresh:
                return FreshPrompt(decoded, len(fresh), token, "first token replaced (exact)")
        raise RuntimeError("no distinct first token round-trips through the tokenizer")
