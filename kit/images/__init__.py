"""The kit's container images: registry, lock files, builds, and what a built image is.

Imports the `docker` package lazily (inside functions): the harness side never needs it.
"""
