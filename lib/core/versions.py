"""The TensorFlow and Keras versions this suite supports, and what it says when it runs on others.

The oldest end is what recent Google Colab runtimes ship (the notebooks run there on Colab's own TensorFlow
and Keras) and what `requirements-oldest.txt` installs for `make test-oldest`; the newest end is the pins of
`requirements.txt`, what `make setup` installs (a test checks that both files agree with this table). Older
versions stop a stage with a message; newer ones, not tested yet, get a warning and run.
"""
from __future__ import annotations

import importlib.metadata
import re

from lib import SuiteError

# The suite's own version (CHANGELOG.md, CITATION.cff); every run's manifest records it.
SUITE_VERSION = "1.2.0"
# Package -> (oldest supported, newest tested): the pins of requirements-oldest.txt and requirements.txt.
SUPPORTED = {"tensorflow": ("2.19.0", "2.21.0"), "keras": ("3.10.0", "3.15.1")}


def parse(version: str) -> tuple[int, ...]:
    """The release numbers of a version string (`2.19.0rc1` -> (2, 19, 0)), for comparisons."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0].split("rc")[0])[:3])


def installed(package: str) -> str | None:
    """The installed version of `package`, or None."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def check(found: dict[str, str | None] | None = None) -> list[str]:
    """Warnings for versions newer than the newest tested; a `SuiteError` naming the fix for one older than the
    oldest supported (or missing). `found` maps package to version (default: what is installed)."""
    found = found if found is not None else {package: installed(package) for package in SUPPORTED}
    warnings = []
    for package, (oldest, newest) in SUPPORTED.items():
        version = found.get(package)
        if version is None or parse(version) < parse(oldest):
            found_here = f"{package} {version} is older than this suite supports" if version else (
                f"{package} is not installed; this suite supports")
            raise SuiteError(f"{found_here} {oldest} to {newest}. Install a supported version: `pip install "
                             f"'{package}>={oldest}'`, or `make setup` for the tested pins.")
        if parse(version) > parse(newest):
            warnings.append(f"{package} {version} is newer than this suite was tested with ({oldest} to {newest}); "
                            "if something fails, `pip install -r requirements.txt` installs the tested pins.")
    return warnings
