"""Downloading a file so that a broken download never looks like a good one.

The bytes go to a temporary name beside the target (`lib.core.storage.atomic_path`: locked while written, removed
on failure), are counted against the size the server announced and hashed as they arrive, and the file is renamed
to its name only when it is whole and its hash is the one expected. Two processes downloading the same file at
once each write their own temporary file; the last rename wins, and both are whole.
"""
from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

from lib import SuiteError
from lib.core import storage


class DownloadFailed(SuiteError):
    """The download did not complete, or what arrived is not the file expected; the target was left untouched."""


def fetch(url: str, target: str | os.PathLike, expected: tuple[str, str] | None = None,
          stall_seconds: float = 30) -> str:
    """Download `url` to `target`; returns the sha256 of what arrived. `expected` is `(algorithm, hex digest)`
    (sha256 or md5) when a published hash is known: a file with another is refused. A connection that sends
    nothing for `stall_seconds` counts as failed (a captive or dead network)."""
    target = Path(target)
    digests = {"sha256": hashlib.sha256(), **({expected[0]: hashlib.new(expected[0])} if expected else {})}
    with storage.atomic_path(target) as temporary:
        with urllib.request.urlopen(url, timeout=stall_seconds) as response, open(temporary, "wb") as handle:
            announced = response.headers.get("Content-Length")
            received = 0
            for chunk in iter(lambda: response.read(1 << 20), b""):
                handle.write(chunk)
                received += len(chunk)
                for digest in digests.values():
                    digest.update(chunk)
        if announced and announced.isdigit() and received != int(announced):
            raise DownloadFailed(f"{url} ended after {received} of {int(announced)} bytes (the connection was cut).")
        if expected and digests[expected[0]].hexdigest() != expected[1].lower():
            raise DownloadFailed(f"{url} sent a file whose {expected[0]} is {digests[expected[0]].hexdigest()}, not "
                                 f"the published {expected[1]}: a damaged or different file.")
    return digests["sha256"].hexdigest()

