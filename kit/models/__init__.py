"""Models: the cache, synthesized and downloaded checkpoints, tokenizers (no torch here).

`kit.matrix.models` holds the registry (what a model is); this package makes a model usable:
`prepare` (a checkpoint in the cache) and `tokenizer` (prompts as exact token ids).
"""
