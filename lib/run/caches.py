"""What the cache folder holds and which runs use it: `make cache` lists it, `make clean-cache` prunes it.

    python -m lib.run.caches            # list: kind, size, the runs that use each entry
    python -m lib.run.caches --clean    # remove the entries no run in the outputs folder uses
    python -m lib.run.caches --clean --all

Each stage records in its `metrics.json` the cache entries it read or wrote (`cache_entries`); an entry is in use
while a completed stage of some run under `OUTPUTS_DIR` names it. Cleaning never touches a run folder. An
interrupted stage has no `metrics.json` yet: the entries it made are cleaned like unused ones (and made again
when it runs).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from lib.core import paths, records, stages


def entries() -> dict[str, list[Path]]:
    """The cache's entries by name (`lib.core.paths.cache_entry_name`), each with its files or folder. Files
    being written (`.partial`) are left out: they belong to a run in progress."""
    root, found = paths.cache_root(), {}
    if not root.is_dir():
        return found
    for top in sorted(root.iterdir()):
        members = sorted(top.iterdir()) if top.is_dir() and top.name in paths.CACHE_KINDS else [top]
        for member in members:
            if ".partial" not in member.name:
                found.setdefault(paths.cache_entry_name(member), []).append(member)
    return found


def users() -> dict[str, list[str]]:
    """Cache entry name -> the runs (`run/stage`) whose completed stages recorded using it."""
    used: dict[str, list[str]] = {}
    root = paths.outputs_root()
    for metrics_file in sorted(root.glob(f"*/*/{records.METRICS_FILE}")):
        if metrics_file.parent.name not in stages.STEMS:
            continue
        for name in records.read_metrics(metrics_file.parent).get("cache_entries") or []:
            used.setdefault(name, []).append(f"{metrics_file.parent.parent.name}/{metrics_file.parent.name}")
    return used


def size_of(members: list[Path]) -> int:
    """Bytes on disk of an entry's files (a folder's files counted)."""
    files = [file for member in members for file in ([member] if member.is_file() else member.rglob("*"))]
    return sum(file.stat().st_size for file in files if file.is_file())


def kind_of(name: str) -> str:
    """What an entry holds, in words."""
    top = name.split("/")[0]
    return paths.CACHE_KINDS.get(top, "generated photos")


def listing() -> str:
    """The cache as a table: kind, size, entry, the runs that use it; and the totals."""
    found, used = entries(), users()
    lines = [f"Cache: {paths.cache_root()} (CACHE_DIR moves it); runs read from {paths.outputs_root()}"]
    unused_bytes, total = 0, 0
    for name, members in found.items():
        size = size_of(members)
        total += size
        unused_bytes += 0 if name in used else size
        runs = ", ".join(sorted({user.split("/")[0] for user in used.get(name, [])})) or "(no run)"
        lines.append(f"  {kind_of(name):<18} {size / 1e6:>9.1f} MB  {name}  used by: {runs}")
    lines.append(f"{len(found)} entries, {total / 1e6:.1f} MB; {unused_bytes / 1e6:.1f} MB used by no run "
                 "(`make clean-cache` removes those, `make clean-cache ALL=1` everything).")
    return "\n".join(lines)


def clean(everything: bool = False) -> tuple[int, int]:
    """Remove the entries no run uses (`everything`: all of them); never a run folder. Returns (entries, bytes)."""
    used, removed, freed = users(), 0, 0
    for name, members in entries().items():
        if everything or name not in used:
            freed += size_of(members)
            removed += 1
            for member in members:
                if member.is_dir():
                    shutil.rmtree(member)
                else:
                    member.unlink(missing_ok=True)
    return removed, freed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.run.caches", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean", action="store_true", help="remove the entries that no run uses")
    parser.add_argument("--all", action="store_true", help="with --clean: remove every entry")
    arguments = parser.parse_args(argv)
    if arguments.clean:
        removed, freed = clean(arguments.all)
        print(f"Removed {removed} cache entries, {freed / 1e6:.1f} MB{' (all of them)' if arguments.all else ''}.")
    print(listing())
    return 0


if __name__ == "__main__":
    sys.exit(main())
