"""The smaller holes: files never written through a planted link, CSV cells that no spreadsheet runs, photos decoded
only as photo formats, failures of the machine never cached as bad photos, special files listed as skipped,
bounded downloads, signals held and then acted on, and one `make predict` per run at a time."""
from __future__ import annotations

import csv
import errno
import http.server
import os
import shutil
import signal
import socket
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import make_dataset, serve_files, write_image

from lib import SuiteError
from lib.core import download, locks, paths, records, stages
from lib.run import execution, predict
from lib.study import decode, listing, photo_download, photos


def test_a_link_planted_as_the_run_lock_is_refused_and_its_target_kept(tmp_path):
    folder = paths.run_dir("planted")
    folder.mkdir(parents=True)
    precious = tmp_path / "precious.txt"
    precious.write_text("a user's file\n")
    (folder / locks.RUN_LOCK_FILE).symlink_to(precious)
    with pytest.raises(SuiteError, match=r"\.runner\.lock is a link: the suite never writes through a link"):
        locks.hold_run(folder)
    assert precious.read_text() == "a user's file\n"


def test_a_photo_name_that_is_a_formula_is_written_as_text_in_the_csv(tmp_path):
    rows = [{"path": name, "p_dog": -0.5 if name == "-1" else 0.9, "label": "dog", "true_label": ""}
            for name in ("=HYPERLINK(1).jpg", "+1.jpg", "-1", "@SUM(A1).jpg", "\tcat.jpg", "\rcat.jpg", "cat.jpg")]
    text = records.csv_text(rows, ["path", "p_dog", "label", "true_label"])
    cells = [row["path"] for row in csv.DictReader(text.splitlines(keepends=True))]
    assert cells == ["'=HYPERLINK(1).jpg", "'+1.jpg", "'-1", "'@SUM(A1).jpg", "'\tcat.jpg", "'\rcat.jpg", "cat.jpg"]
    assert [row["p_dog"] for row in csv.DictReader(text.splitlines(keepends=True))][2] == "-0.5"  # A number stays.
    paths.run_dir("formulas").mkdir(parents=True)
    predict.write("formulas", rows, {"run": "formulas", "stage": "fine_tuning", "model": "m", "images": "photos",
                                     "count": len(rows), "labelled": 0, "accuracy": None, "dogs": 7, "cats": 0,
                                     "skipped": [], "written": records.now()}, [])
    written = (paths.run_dir("formulas") / "predictions" / "predictions.csv").read_text()
    assert "\n'=HYPERLINK(1).jpg," in written and "\n=" not in written


def test_a_file_of_another_format_under_a_photo_name_is_skipped_unopened(tmp_path):
    root = make_dataset(tmp_path / "data", per_class=2)
    write_image(root / "train" / "cats" / "tiff.jpg", fmt="TIFF")
    write_image(root / "train" / "cats" / "webp.webp", fmt="WEBP")
    image_set = photos.load_split(root, "train", 32, use_cache=False)
    assert [(Path(path).name, reason) for path, reason in image_set.skipped] == [
        ("tiff.jpg", "could not be decoded (not a JPEG, PNG, BMP, GIF or WebP image: other formats are never opened)")]
    assert len(image_set) == 5


def test_a_failure_of_the_machine_is_never_cached_as_a_bad_photo(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "data", per_class=2)
    flaky = root / "train" / "cats" / "cat.0.jpg"
    real = decode.decode

    def failing(path, image_size):
        if path == flaky:
            raise OSError(errno.EIO, "Input/output error")
        return real(path, image_size)

    monkeypatch.setattr(decode, "decode", failing)
    with pytest.raises(decode.ReadFailed, match="Could not read .*cat.0.jpg .*Input/output error.*Nothing was cached"):
        photos.load_split(root, "train", 32)
    for store in ("memory", "disk"):
        with pytest.raises(decode.ReadFailed):
            photos.load_split(root, "train", 32, image_store=store)
    assert photos.load_split(root, "train", 32, use_cache=False).skipped[0][1].startswith(
        "could not be read (OSError: [Errno 5] Input/output error): a failure of the disk or the memory")
    monkeypatch.setattr(decode, "decode", real)  # The disk is well again: every photo is there.
    assert [len(photos.load_split(root, "train", 32, image_store=store)) for store in ("memory", "disk")] == [4, 4]

    calls = []

    def once_out_of_memory(path, image_size):
        calls.append(path)
        if len(calls) == 1:
            raise MemoryError()
        return real(path, image_size)

    monkeypatch.setattr(decode, "decode", once_out_of_memory)
    errors: dict[str, str] = {}
    images, ok = decode.decode_files([flaky], 32, errors, cached=True)  # Tried again alone: decoded.
    assert ok.tolist() == [True] and errors == {} and len(calls) == 2


def test_links_to_nothing_pipes_and_sockets_are_listed_as_skipped_never_opened(tmp_path):
    root = make_dataset(tmp_path / "data", per_class=2)
    cats = root / "train" / "cats"
    (cats / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    os.mkfifo(cats / "pipe.jpg")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(cats / "socket.jpg"))
    try:
        split_listing = listing.list_split(root, "train")
        reasons = {Path(path).name: reason for path, reason in split_listing.skipped}
        assert reasons == {"gone.jpg": "a link to nothing (no such file or directory)",
                           "pipe.jpg": "a named pipe, not a photo (never opened)",
                           "socket.jpg": "a socket, not a photo (never opened)"}
        assert len(split_listing.files) == 4
        found, skipped = predict.list_photos(str(root))
        assert len(found) == 8 and sorted(Path(item["path"]).name for item in skipped) == sorted(reasons)
    finally:
        listener.close()


def test_a_download_over_its_size_or_its_time_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    address, server = serve_files({"file": b"0123456789"})
    try:
        with pytest.raises(download.DownloadFailed, match="announces 10 bytes, over the 5 this download may take"):
            download.fetch(f"{address}/file", tmp_path / "file", max_bytes=5)
        with pytest.raises(download.DownloadFailed, match="took longer than 0 s"):
            download.fetch(f"{address}/file", tmp_path / "file", deadline_seconds=0)
        monkeypatch.setattr(shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(1 << 40, 1 << 40, 1 << 20))
        with pytest.raises(SuiteError, match="Not enough disk space for downloading file"):
            download.fetch(f"{address}/file", tmp_path / "file", max_bytes=1 << 30)  # Needs 10 bytes + a margin.
    finally:
        server.shutdown()
    assert list(tmp_path.iterdir()) == []


class _Unannounced(http.server.BaseHTTPRequestHandler):
    """Sends 64 kB without a Content-Length (the end of the connection ends the file)."""

    def do_GET(self):  # The name http.server calls.
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"x" * 65536)

    def log_message(self, *args):
        pass


def test_a_download_that_sends_more_than_its_cap_is_cut_off(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unannounced)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(download.DownloadFailed, match="sent more than the 1000 bytes this download may take"):
            download.fetch(f"http://127.0.0.1:{server.server_address[1]}/file", tmp_path / "file", max_bytes=1000)
    finally:
        server.shutdown()
    assert list(tmp_path.iterdir()) == []


def test_the_data_set_is_not_unpacked_onto_a_disk_without_room_and_the_archive_is_kept(tmp_path, monkeypatch):
    source = make_dataset(tmp_path / "build" / "cats_and_dogs_filtered", per_class=2)
    target = tmp_path / "data" / "cats_and_dogs_filtered"
    archive = target.parent / "downloads" / photo_download.ARCHIVE_NAME
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(source.rglob("*.jpg")):
            bundle.write(path, path.relative_to(source.parent))
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(1 << 40, 1 << 40, 1 << 20))
    with pytest.raises(SuiteError, match=f"Not enough disk space for unpacking {photo_download.ARCHIVE_NAME}"):
        photo_download.download_photos(target, ("http://127.0.0.1:9/none.zip",), {"train": 4, "validation": 4})
    assert archive.is_file() and sorted(path.name for path in target.parent.iterdir()) == ["downloads"]


@pytest.mark.parametrize("number, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, execution.Terminated)])
def test_a_signal_during_a_held_section_is_acted_on_when_it_ends(number, raised):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    execution.raise_on_sigterm()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # As Python starts, even where a shell ignores it.
    finished = []
    try:
        with pytest.raises(raised):
            with execution.signals_held():
                os.kill(os.getpid(), number)
                finished.append("the clean-up")
        assert finished == ["the clean-up"]
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])


def test_a_second_predict_on_a_run_is_refused_at_once(tmp_path):
    stage = stages.STAGES[-1]
    folder = paths.stage_dir("busy", stage.stem)
    folder.mkdir(parents=True)
    for name in (records.STAGE_FILE, records.METRICS_FILE, stage.hand_off_model):
        (folder / name).write_text("{}")
    write_image(tmp_path / "photo.jpg")
    hold = predict.hold_predictions("busy")
    try:
        with pytest.raises(SuiteError, match="Run busy's predictions are being written by another make predict: "
                                             f"process {os.getpid()} on "):
            predict.predict("busy", str(tmp_path / "photo.jpg"))
    finally:
        locks.release(hold)


def test_a_photo_the_user_may_not_read_is_skipped_not_a_stop(tmp_path, monkeypatch):
    """Permission denied or gone (EACCES, ENOENT) is the photo's problem, not the machine's: skipped with its
    reason, and the run goes on, now and on every later run."""
    root = make_dataset(tmp_path / "data", per_class=2)
    locked = root / "train" / "cats" / "cat.0.jpg"
    real = decode.decode

    def refusing(path, image_size):
        if path == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, image_size)

    monkeypatch.setattr(decode, "decode", refusing)
    assert not decode.is_transient(PermissionError(errno.EACCES, "Permission denied"))
    assert decode.is_transient(OSError(errno.EIO, "Input/output error")) and decode.is_transient(MemoryError())
    for store in ("memory", "disk"):
        loaded = photos.load_split(root, "train", 32, image_store=store)
        assert len(loaded) == 3 and "Permission denied" in loaded.skipped[0][1]
