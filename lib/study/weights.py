"""Which VGG16 conv-base weights a run loads: ImageNet (downloaded or local file) or none.

`weights` is `imagenet`, a path to a notop `.h5` file, or `none` (random initialisation, for smoke tests
only: every metrics file and report says so). The `VGG16_WEIGHTS` environment variable overrides it.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from lib import SuiteError
from lib.core import download, params, storage

FILE_NAME = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
DOWNLOAD_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/" + FILE_NAME
)
DOWNLOAD_MD5 = "6d6bbae143d832006294945121d1f1fc"  # Keras publishes it (keras.applications.vgg16).
# A download that stalls this long (no byte received) counts as offline.
DOWNLOAD_TIMEOUT_SECONDS = 20
RANDOM_WARNING = "RANDOM WEIGHTS: the conv base is untrained (weights=none); accuracy means nothing."


@dataclasses.dataclass(frozen=True)
class WeightsChoice:
    """What the conv base loads: `kind` is imagenet, file or none; `path` is the HDF5 file (or None)."""

    kind: str
    path: Path | None
    sha256: str | None

    @property
    def is_random(self) -> bool:
        return self.kind == "none"

    def describe(self) -> str:
        """One line for reports and metrics."""
        if self.is_random:
            return RANDOM_WARNING
        return f"ImageNet VGG16 notop ({self.kind}: {self.path}, sha256 {self.sha256[:12]}...)"


def _offline_message(error: Exception, removed: str = "") -> str:
    return (
        f"{removed}Could not download the VGG16 ImageNet weights ({type(error).__name__}: {error}). Offline, "
        f"point the VGG16_WEIGHTS environment variable (or the weights parameter) at a local copy of "
        f"{FILE_NAME}, e.g. VGG16_WEIGHTS=~/data/{FILE_NAME}."
    )


def cached_weights_file() -> Path:
    """Where the downloaded ImageNet weights are kept: Keras's own cache (`~/.keras/models`, `KERAS_HOME` moves it)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / FILE_NAME


def _download_imagenet() -> Path:
    """The notop weights from Keras's cache when the copy there has the published md5, else downloaded there (under
    a temporary name, renamed once whole and checked), failing within seconds offline. A damaged copy in the cache
    (an interrupted download) is removed, and the message says so."""
    cached = cached_weights_file()
    removed = ""
    if cached.is_file():
        if storage.file_digest(cached, "md5") == DOWNLOAD_MD5:
            return cached
        storage.remove(cached)
        removed = (f"The cached weights file {cached} was damaged (its md5 is not the published "
                   f"{DOWNLOAD_MD5}: an interrupted download?) and was removed. ")
        print(removed + "Downloading it again.", flush=True)
    try:
        download.fetch(DOWNLOAD_URL, cached, ("md5", DOWNLOAD_MD5), stall_seconds=DOWNLOAD_TIMEOUT_SECONDS)
    except Exception as error:  # urllib raises several types for one failure; the message names it.
        raise SuiteError(_offline_message(error, removed)) from None
    return cached


def check_weights_file(path: Path) -> None:
    """Raise a `SuiteError` unless `path` is an existing HDF5 file."""
    import h5py

    if not path.is_file():
        raise SuiteError(
            f"VGG16 weights file {path} does not exist. Set VGG16_WEIGHTS (or the weights parameter) to "
            f"the path of {FILE_NAME}, or to 'imagenet' to download it."
        )
    if not h5py.is_hdf5(path):
        raise SuiteError(
            f"VGG16 weights file {path} is not an HDF5 file (damaged or a different format). Use the "
            f"Keras notop file {FILE_NAME}."
        )


def resolve_weights(weights: str = "imagenet") -> WeightsChoice:
    """Turn the `weights` parameter (or `VGG16_WEIGHTS`) into a checked `WeightsChoice`."""
    chosen = params.overridden("weights", weights) or "imagenet"
    if chosen.lower() == "none":
        return WeightsChoice("none", None, None)
    if chosen.lower() == "imagenet":
        path = _download_imagenet()
        kind = "imagenet"
    else:
        path = Path(chosen).expanduser().resolve()
        kind = "file"
    check_weights_file(path)
    return WeightsChoice(kind, path, storage.file_sha256(path))
