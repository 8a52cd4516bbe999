"""What the cache folder holds and which runs use it: `make cache` lists it, `make clean-cache` prunes it.

    python -m lib.run.cache_commands            # list: kind, size, the runs that use each entry
    python -m lib.run.cache_commands --clean    # remove the entries no run in the outputs folder uses
    python -m lib.run.cache_commands --clean --all

Each stage records in its `metrics.json` the cache entries it read or wrote (`cache_entries`); an entry is used
while a completed stage of some run under `OUTPUTS_DIR` names it. Cleaning never touches a run folder, and removes
only what the suite can prove it made (`lib.core.marks`): an entry in a marked `features/`, `images/` or `pool/`
folder, or a marked folder of its own (synthetic photos); anything else in `CACHE_DIR` is refused with one line,
and a link is removed as a link, never followed. A stage holds each entry it uses in use while it runs (a shared
lock, `lib.study.cache.note_used`); cleaning takes an exclusive lock on each entry without waiting, and keeps
those it cannot lock, saying so.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from lib.core import locks, marks, paths, stages

# What the marker of a folder at the top of the cache may say (None: no marker, a folder refused when cleaning).
CACHE_MARKS = (None, *marks.CACHE_FOLDER_KINDS, *paths.CACHE_KINDS.values())


def entries() -> dict[str, list[Path]]:
    """The cache's entries by name (`lib.core.paths.cache_entry_name`), each with its files or folder. Left out:
    hidden names (files being written, `.partial`; the suite's markers), and the suite's folders that are not the
    cache's (a run folder, where `CACHE_DIR` is the outputs folder)."""
    root, found = paths.cache_root(), {}
    if not root.is_dir():
        return found
    for top in sorted(root.iterdir()):
        if top.name.startswith(".") or marks.kind_of(top) not in CACHE_MARKS:
            continue
        kind_folder = top.name in paths.CACHE_KINDS and top.is_dir() and not top.is_symlink()
        for member in sorted(top.iterdir()) if kind_folder else [top]:
            if not member.name.startswith("."):
                found.setdefault(paths.cache_entry_name(member), []).append(member)
    return found


def owner(member: Path) -> Path:
    """The folder whose marker vouches for an entry's file or folder: its kind's folder, else the entry itself."""
    parent = member.parent
    return parent if parent.name in paths.CACHE_KINDS and parent.parent == paths.cache_root() else member


def users() -> dict[str, list[str]]:
    """Cache entry name -> the runs (`run/stage`) whose completed stages recorded using it."""
    from lib.core import records  # Here: `make clean` needs no NumPy, which records' files need.

    used: dict[str, list[str]] = {}
    root = paths.outputs_root()
    for metrics_file in sorted(root.glob(f"*/*/{records.METRICS_FILE}")):
        if metrics_file.parent.name not in stages.STEMS:
            continue
        for name in records.read_metrics(metrics_file.parent).get("cache_entries") or []:
            used.setdefault(name, []).append(f"{metrics_file.parent.parent.name}/{metrics_file.parent.name}")
    return used


def size_of(members: list[Path]) -> int:
    """Bytes on disk of an entry's files (a folder's files counted; links neither counted nor followed)."""
    files = []
    for member in members:
        if member.is_dir() and not member.is_symlink():
            files += [Path(parent) / name for parent, _, names in os.walk(member) for name in names]
        else:
            files.append(member)
    return sum(file.lstat().st_size for file in files if file.is_file() and not file.is_symlink())


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
        size, ours = size_of(members), marks.is_marked(owner(members[0]))
        total += size
        unused_bytes += size if ours and name not in used else 0
        runs = ", ".join(sorted({user.split("/")[0] for user in used.get(name, [])})) or "(no run)"
        kind = kind_of(name) if ours else "not the suite's"
        lines.append(f"  {kind:<18} {size / 1e6:>9.1f} MB  {name}  used by: {runs}")
    lines.append(f"{len(found)} entries, {total / 1e6:.1f} MB; {unused_bytes / 1e6:.1f} MB used by no run "
                 "(`make clean-cache` removes those, `make clean-cache ALL=1` all the suite made).")
    return "\n".join(lines)


@dataclasses.dataclass
class Cleaning:
    """What a clean-up removed (entries, bytes), and what it kept: folders the suite cannot prove it made, and the
    entries a running stage holds in use."""

    removed: int = 0
    freed: int = 0
    refused: list[Path] = dataclasses.field(default_factory=list)
    in_use: list[str] = dataclasses.field(default_factory=list)

    def kept_lines(self) -> list[str]:
        """One line for the folders refused, and one per entry in use."""
        lines = [marks.refusal(self.refused)] if self.refused else []
        return lines + [f"Kept cache entry {name}: a running stage is using it." for name in self.in_use]


def _lock_all(members: list[Path]) -> list[int] | None:
    """Exclusive locks on an entry's files and folders (links need none: only the link goes), or None, having
    released those taken, when a stage holds one of them in use."""
    held = []
    for member in members:
        descriptor = None if member.is_symlink() else locks.try_lock(member)
        if descriptor is None and not member.is_symlink() and member.exists():
            for taken in held:
                locks.release(taken)
            return None
        held.append(descriptor)
    return held


def clean(everything: bool = False) -> Cleaning:
    """Remove the entries no run uses (`everything`: all of them) that the suite made and no stage is using; never
    a run folder, never through a link."""
    used, cleaning = ({} if everything else users()), Cleaning()
    for name, members in entries().items():
        if not everything and name in used:
            continue
        if not marks.is_marked(owner(members[0])):
            cleaning.refused += [owner(members[0])] if owner(members[0]) not in cleaning.refused else []
            continue
        held = _lock_all(members)
        if held is None:
            cleaning.in_use.append(name)
            continue
        cleaning.freed += size_of(members)
        cleaning.removed += 1
        for member in members:
            marks.remove(member)
        for descriptor in held:
            locks.release(descriptor)
    return cleaning


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.run.cache_commands", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean", action="store_true", help="remove the entries that no run uses")
    parser.add_argument("--all", action="store_true", help="with --clean: remove every entry")
    arguments = parser.parse_args(argv)
    if arguments.clean:
        cleaning = clean(arguments.all)
        for line in cleaning.kept_lines():
            print(line)
        print(f"Removed {cleaning.removed} cache entries, {cleaning.freed / 1e6:.1f} MB"
              f"{' (all of them)' if arguments.all else ''}.")
    print(listing())
    return 0


if __name__ == "__main__":
    sys.exit(main())
