"""Sub-commands of `kit`, discovered by `kit.cli` (one module each)."""
