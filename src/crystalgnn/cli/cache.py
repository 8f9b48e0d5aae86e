"""``crystalgnn cache list | prune | clear``: what the graph and descriptor cache holds, and
removing what nothing reads any more."""

from __future__ import annotations

import argparse
import time

HELP = "list the graph and descriptor cache, prune what is stale or unused, or clear it"


def add_parser(sub, full: bool = True) -> argparse.ArgumentParser:
    p = sub.add_parser("cache", help=HELP, description=(
        "The cache ($CRYSTALGNN_CACHE or ~/.cache/crystalgnn) holds one folder per graph setting and per descriptor "
        "setting. list: each folder's kind, entries, size, last write and whether it is stale (written by older "
        "building code). prune: remove stale folders, folders not written for --older-than days, and files set aside "
        "as *.corrupt. clear: remove every folder (runs rebuild what they need). --dry-run shows what would go."))
    p.add_argument("action", choices=["list", "prune", "clear"])
    p.add_argument("--cache-dir", default="default", help="cache folder (default: $CRYSTALGNN_CACHE or ~/.cache/crystalgnn)")
    p.add_argument("--older-than", type=float, default=30.0, help="prune: folders not written for this many days (30)")
    p.add_argument("--dry-run", action="store_true", help="prune / clear: list what would be removed, remove nothing")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from crystalgnn.cache_admin import cache_folders, clear, prune
    from crystalgnn.paths import resolve_cache_dir

    root = resolve_cache_dir(args.cache_dir)
    if args.action == "list":
        folders = cache_folders(root)
        print(f"{root}: {len(folders)} folder(s), {sum(f.bytes for f in folders) / 1e6:.1f} MB")
        print(f"{'folder':<32} {'kind':<12} {'entries':>8} {'MB':>8}  {'last written':<16}  stale")
        for f in folders:
            stale = {True: "yes", False: "no", None: "?"}[f.stale] + (f", {f.corrupt} corrupt file(s)" if f.corrupt else "")
            written = time.strftime("%Y-%m-%d %H:%M", time.localtime(f.last_written))
            print(f"{f.path.name:<32} {f.kind:<12} {f.entries:>8} {f.bytes / 1e6:>8.1f}  {written:<16}  {stale}")
        return 0
    removed = prune(root, args.older_than, args.dry_run) if args.action == "prune" else clear(root, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"{verb} {path}")
    print(f"{verb} {len(removed)} item(s) from {root}")
    return 0
