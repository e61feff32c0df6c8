"""`kit images list|build|lock`: the kit's container images."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HELP = "list, build or lock the kit's container images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="images_command", metavar="ACTION", required=True)
    listing = sub.add_parser(
        "list", help="each image variant: stack, lock hash, base digest, built here?"
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    build = sub.add_parser("build", help="build images, streaming the build log")
    build.add_argument("names", nargs="*", help="images (default: kit)")
    build.add_argument("--variant", help="cpu or cuda (default: each image's first)")
    build.add_argument("--base-image", help="build from this base instead of the locked one")
    build.add_argument("--no-wheelhouse", action="store_true", help="let pip use the index")
    build.add_argument(
        "--extra-ca-bundle", type=Path, help="PEM bundle pip trusts in the build (proxies)"
    )
    build.add_argument("--network", help="build network, e.g. host (proxies on localhost)")
    build.add_argument("--quiet", action="store_true", help="print only the result")
    lock = sub.add_parser("lock", help="regenerate lock files from docker/versions.env")
    lock.add_argument("names", nargs="*", help="images or IMAGE:VARIANT (default: all)")
    lock.add_argument("--no-digests", action="store_true", help="do not ask the registry")


def list_images() -> list[dict[str, Any]]:
    """One row per image variant: the computed result of `kit images list`."""
    return [row.to_json() for row in _rows()]


def _rows() -> list[Any]:
    from kit.errors import KitError
    from kit.images.listing import image_rows
    from kit.runner.preflight import connect

    try:
        client = connect()
    except KitError as err:  # the lock facts stand without a daemon; "built" is unknown
        return image_rows(None, f"docker: {err.title}")
    return image_rows(client)


def run(args: argparse.Namespace) -> int:
    from kit.images.registry import image_spec

    if args.images_command == "list":
        from kit.images.listing import render_rows

        rows = _rows()
        print(json.dumps([r.to_json() for r in rows], indent=1) if args.json else render_rows(rows))
        return 0
    if args.images_command == "lock":
        from kit.images.lock import update_lock

        update_lock(
            args.names or None,
            resolve_digests=not args.no_digests,
            progress=lambda line: print(line, file=sys.stderr),
        )
        print("wrote docker/images.lock.json and the requirement locks")
        return 0
    from kit.images.build import BuildOptions, build_image

    options = BuildOptions(
        base_image=args.base_image,
        wheelhouse=not args.no_wheelhouse,
        extra_ca_bundle=args.extra_ca_bundle,
        network=args.network,
    )
    for name in args.names or ["kit"]:
        spec = image_spec(name)
        variant = spec.variant(args.variant if len(spec.variants) > 1 else None)
        result = build_image(
            spec,
            variant,
            options,
            progress=(lambda line: None) if args.quiet else (lambda line: print(line, flush=True)),
        )
        print(f"built {result.tag} {result.image_id} from {result.base_image}")
    return 0
