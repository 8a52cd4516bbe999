"""Downloading a file so that a broken download never looks like a good one.

The bytes go to a temporary name beside the target (`lib.core.storage.atomic_path`: locked while written, removed
on failure), are counted against the size the server announced and hashed as they arrive, and the file is renamed
to its name only when it is whole and its hash is the one expected. A download is bounded: a size it may not
exceed (a server announcing more is refused before anything is written, and one sending more is cut off), a total
time (a connection that trickles a byte now and then never holds the command), and room on the disk for what the
server announces. Two processes downloading the same file at once each write their own temporary file; the last
rename wins, and both are whole.
"""
from __future__ import annotations

import hashlib
import os
import time
import urllib.request
from pathlib import Path

from lib import SuiteError
from lib.core import storage

CHUNK_BYTES = 1 << 20


class DownloadFailed(SuiteError):
    """The download did not complete, or what arrived is not the file expected; the target was left untouched."""


def fetch(url: str, target: str | os.PathLike, expected: tuple[str, str] | None = None,
          stall_seconds: float = 30, deadline_seconds: float = 3600, max_bytes: int = 1 << 30) -> str:
    """Download `url` to `target`; returns the sha256 of what arrived. `expected` is `(algorithm, hex digest)`
    (sha256 or md5) when a published hash is known: a file with another is refused. A connection that sends
    nothing for `stall_seconds` counts as failed (a captive or dead network), and so does a download still going
    after `deadline_seconds` or larger than `max_bytes`; a disk without room for the announced size is a
    `SuiteError` before anything is written."""
    target = Path(target)
    digests = {"sha256": hashlib.sha256(), **({expected[0]: hashlib.new(expected[0])} if expected else {})}
    give_up = time.monotonic() + deadline_seconds
    with storage.atomic_path(target) as temporary:
        with urllib.request.urlopen(url, timeout=stall_seconds) as response, open(temporary, "wb") as handle:
            announced = response.headers.get("Content-Length")
            announced = int(announced) if announced and announced.isdigit() else None
            if announced is not None and announced > max_bytes:
                raise DownloadFailed(f"{url} announces {announced} bytes, over the {max_bytes} this download may "
                                     "take: not the file expected.")
            storage.check_free_space(target.parent, announced or 0, f"downloading {target.name}")
            received = 0
            # read1: at most one read from the connection, so the deadline is checked however slowly bytes come.
            for chunk in iter(lambda: getattr(response, "read1", response.read)(CHUNK_BYTES), b""):
                received += len(chunk)
                if received > max_bytes:
                    raise DownloadFailed(f"{url} sent more than the {max_bytes} bytes this download may take: not "
                                         "the file expected.")
                if time.monotonic() > give_up:
                    raise DownloadFailed(f"{url} took longer than {deadline_seconds:.0f} s ({received} bytes "
                                         "arrived): the connection is too slow. Run the command again later.")
                handle.write(chunk)
                for digest in digests.values():
                    digest.update(chunk)
        if announced is not None and received != announced:
            raise DownloadFailed(f"{url} ended after {received} of {announced} bytes (the connection was cut).")
        if expected and digests[expected[0]].hexdigest() != expected[1].lower():
            raise DownloadFailed(f"{url} sent a file whose {expected[0]} is {digests[expected[0]].hexdigest()}, not "
                                 f"the published {expected[1]}: a damaged or different file.")
    return digests["sha256"].hexdigest()
