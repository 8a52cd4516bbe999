"""A stage's last complete result kept until a complete new one replaces it.

A stage that has completed in a run (its folder holds `stage.json`) runs again beside it, in `<stem>.rerun/`
(`lib.core.records.attempt_folder`): the notebook writes its files, training backup and report there as a first run
writes into the stage's folder, so a rerun that was interrupted resumes from its backup when the same command runs
again. Only once the new attempt is complete (its `stage.json` written) does it take the stage folder's place: the
two folders are exchanged in one step where the system offers it (Linux's `renameat2`), else by two renames, and
the old result is removed. A rerun that fails or is interrupted leaves the stage's folder as it was, the last
complete result (the summary page shows it, with the failure beside it), and its own files in `<stem>.rerun/`.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

from lib.core import paths, storage

_AT_FDCWD = -100  # Paths relative to the current folder (ours are absolute).
_RENAME_EXCHANGE = 2


def _exchange(first: Path, second: Path) -> bool:
    """Swap two folders in one atomic step; False where the system cannot (no `renameat2`, a file system without
    the exchange), and nothing was moved."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0


def swap_in(run: str, stem: str, attempt: Path) -> None:
    """Make the complete `attempt` (`records.attempt_folder`) the stage's folder, in place of the result before it,
    which is then removed; nothing to do when the attempt ran in the stage's folder itself."""
    folder = paths.stage_dir(run, stem)
    if Path(attempt) == folder:
        return
    if _exchange(Path(attempt), folder):
        replaced = Path(attempt)
    else:
        replaced = folder.with_name(f".{stem}.replaced")
        storage.remove_tree(replaced)
        os.rename(folder, replaced)
        os.rename(attempt, folder)
    storage.sync_folder(folder.parent)
    storage.remove_tree(replaced)
