"""HOW one cell is measured. Runs inside the backend's process or container:
`python -m kit.harness --input FILE` (see docs/FORMATS.md). The only package that imports
ML libraries, and only lazily, per backend."""
