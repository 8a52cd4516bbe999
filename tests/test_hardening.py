"""Hardening: paths made absolute once, one runner per run, photos too large to decode, downloads that are checked
before they are used, what killed processes leave behind, values that make passes as text, workers that end with
their runner, and what a local cluster exposes on the network."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, make_dataset, serve_files, write_flat_png, write_image

from lib import SuiteError, runner
from lib.core import download, locks, marks, params, paths, records, storage
from lib.run import cluster, housekeeping
from lib.study import decode, listing, photo_download, photos, weights


def run_python(code: str, *arguments: str, **environment: str) -> subprocess.CompletedProcess:
    """`python -c code` in the project, with `environment` added."""
    return subprocess.run([sys.executable, "-c", code, *arguments], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **environment})


# 1. Paths given by the user are made absolute once, from where the command started.

def test_relative_paths_are_made_absolute_from_where_the_command_started(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", "photos")
    monkeypatch.setenv("VGG16_WEIGHTS", "weights/vgg16.h5")
    monkeypatch.setenv("OUTPUTS_DIR", "runs")
    monkeypatch.setenv("CACHE_DIR", "~/caches")
    params.absolute_environment()
    assert os.environ["DATA_DIR"] == str(tmp_path / "photos")
    assert os.environ["VGG16_WEIGHTS"] == str(tmp_path / "weights" / "vgg16.h5")
    assert os.environ["OUTPUTS_DIR"] == str(tmp_path / "runs") and paths.outputs_root() == tmp_path / "runs"
    assert os.environ["CACHE_DIR"] == os.path.expanduser("~/caches")
    for words in ({"DATA_DIR": "synthetic:40", "VGG16_WEIGHTS": "none"}, {"DATA_DIR": "synthetic",
                                                                           "VGG16_WEIGHTS": "imagenet"}):
        for variable, value in words.items():
            monkeypatch.setenv(variable, value)
        params.absolute_environment()
        assert {variable: os.environ[variable] for variable in words} == words
    monkeypatch.delenv("DATA_DIR")
    monkeypatch.delenv("VGG16_WEIGHTS")
    profile = {"name": "mine", "path": "mine.yaml", "common": {"data_dir": "../photos", "weights": "w.h5"}}
    resolved = params.resolve_for_stage("feature_extraction", profile, {})
    assert resolved["data_dir"] == str(tmp_path.parent / "photos") and resolved["weights"] == str(tmp_path / "w.h5")


# 2. One runner per run folder.

def test_a_second_runner_on_a_run_is_refused_naming_the_first(tmp_path, capsys):
    folder = paths.run_dir("busy")
    code = ("import sys, time; from pathlib import Path; from lib.core import locks; "
            "locks.hold_run(Path(sys.argv[1])); print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        storage.write_json(folder / "manifest.json", {"status": "running", "stages": {},
                                                      "runner": {"pid": holder.pid, "host": os.uname().nodename}})
        started = time.time()
        assert runner.main(["feature_extraction", "--profile", "smoke", "--run", "busy", "--no-forecast"]) == 2
        assert time.time() - started < 30
        error = capsys.readouterr().err
        assert f"Run busy is being run by another runner: process {holder.pid} on " in error and " since " in error
        assert records.read_manifest("busy")["status"] == "running"
    finally:
        holder.kill()
        holder.wait()
    assert not locks.is_held(folder / locks.RUN_LOCK_FILE)  # The kernel let go of it with the process.
    assert records.read_manifest("busy")["status"] == "interrupted"


# 4. A pixel limit for every decode.

def test_a_photo_over_the_pixel_limit_is_skipped_before_it_is_decoded(tmp_path):
    huge = write_flat_png(tmp_path / "huge.png", 13_300)
    normal = write_image(tmp_path / "normal.jpg")
    assert huge.stat().st_size < 1 << 20
    # The peak resident memory of this process since it started (VmHWM: getrusage's would count what the process it
    # was forked from held).
    code = ("import json, sys; from pathlib import Path; from lib.study import decode; errors = {}; "
            "images, ok = decode.decode_files([Path(p) for p in sys.argv[1:]], 32, errors); "
            "peak = next(line for line in open('/proc/self/status') if line.startswith('VmHWM')).split()[1]; "
            "print(json.dumps({'ok': ok.tolist(), 'errors': errors, 'peak_mb': int(peak) / 1024}))")
    result = run_python(code, str(huge), str(normal))
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["ok"] == [False, True]
    assert outcome["errors"][str(huge)] == ("too large: 13300x13300 pixels (176.9 million), over the limit of 50 "
                                            "million pixels for one photo")
    assert outcome["peak_mb"] < 300, outcome  # Decoding it would take 1.4 GB.


def test_a_held_run_and_a_photo_too_large_are_suite_errors(tmp_path, monkeypatch):
    """Each reaches whoever catches the suite's errors as one line, as every other problem of input does."""
    hold = locks.hold_run(tmp_path / "run")
    try:
        with pytest.raises(SuiteError, match="since"):
            locks.hold_run(tmp_path / "run")
    finally:
        locks.release(hold)
    monkeypatch.setattr(decode, "MAX_PIXELS", 10_000)
    with pytest.raises(SuiteError, match="over the limit"):
        decode.decode(write_image(tmp_path / "large.png", size=(200, 160), fmt="PNG"), 32)


def test_a_large_jpeg_decodes_at_a_smaller_scale_and_other_large_photos_are_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "MAX_PIXELS", 10_000)
    jpeg = write_image(tmp_path / "large.jpg", size=(200, 160))
    png = write_image(tmp_path / "large.png", size=(200, 160), fmt="PNG")
    assert decode.decode(jpeg, 32).shape == (32, 32, 3)  # Decoded at 1/4 scale: 50 x 40.
    with pytest.raises(decode.PhotoTooLarge, match="200x160 pixels .* over the limit of 0 million"):
        decode.decode(png, 32)
    root = make_dataset(tmp_path / "d", per_class=2)
    shutil.copy(png, root / "train" / "cats" / "large.png")
    image_set = photos.load_split(root, "train", 32)
    assert len(image_set) == 4
    skipped = [(Path(path).name, reason.split(":")[0]) for path, reason in image_set.skipped]
    assert skipped == [("large.png", "too large")]


# 5. Downloads: under a temporary name, checked, then renamed; a bad archive is removed, with a message.

def dataset_archive(tmp_path: Path, with_train: bool = True) -> bytes:
    source = make_dataset(tmp_path / "build" / "cats_and_dogs_filtered", per_class=2)
    if not with_train:
        os.rename(source / "train", source / "training")
    archive = tmp_path / "build.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(source.rglob("*.jpg")):
            bundle.write(path, path.relative_to(source.parent))
    return archive.read_bytes()


COUNTS = {"train": 4, "validation": 4}


def test_an_interrupted_dataset_download_is_refused_and_a_damaged_archive_removed(tmp_path, capsys):
    good = dataset_archive(tmp_path)
    address, server = serve_files({"cut.zip": good, "good.zip": good}, cut_at={"cut.zip": len(good) // 2})
    target = tmp_path / "data" / "cats_and_dogs_filtered"
    archive = target.parent / "downloads" / photo_download.ARCHIVE_NAME
    try:
        with pytest.raises(SuiteError, match=f"ended after {len(good) // 2} of {len(good)} bytes"):
            photo_download.download_photos(target, (f"{address}/cut.zip",), COUNTS)
        assert not archive.exists() and not list(archive.parent.iterdir()) and not target.exists()
        archive.write_bytes(good[: len(good) // 2])  # As an older version left it, killed mid-download.
        photo_download.download_photos(target, (f"{address}/good.zip",), COUNTS)
        assert f"The dataset archive {archive} was damaged (BadZipFile" in capsys.readouterr().out
        assert [len(listing.list_split(target, split).files) for split in COUNTS] == [4, 4]
        shutil.rmtree(target)
        archive.write_bytes(good[: len(good) // 2])
        with pytest.raises(SuiteError, match="download failed"):  # Offline: the damaged copy is not used either.
            photo_download.download_photos(target, ("http://127.0.0.1:9/none.zip",), COUNTS)
        assert "was damaged" in capsys.readouterr().out and not archive.exists()
    finally:
        server.shutdown()


def test_an_archive_that_is_not_the_data_set_is_removed_with_a_message(tmp_path):
    address, server = serve_files({"other.zip": dataset_archive(tmp_path, with_train=False)})
    target = tmp_path / "data" / "cats_and_dogs_filtered"
    try:
        with pytest.raises(SuiteError, match="holds no train/ folder.* was removed: run the same command again"):
            photo_download.download_photos(target, (f"{address}/other.zip",), COUNTS)
    finally:
        server.shutdown()
    assert not target.exists() and sorted(path.name for path in target.parent.rglob("*")) == ["downloads"]


def test_two_first_runs_download_and_unpack_the_data_set_at_once(tmp_path):
    address, server = serve_files({"set.zip": dataset_archive(tmp_path)})
    target = tmp_path / "data" / "cats_and_dogs_filtered"
    code = ("import sys; from pathlib import Path; from lib.study import photo_download; "
            "photo_download.download_photos(Path(sys.argv[1]), (sys.argv[2],), {'train': 4, 'validation': 4})")
    try:
        runs = [subprocess.Popen([sys.executable, "-c", code, str(target), f"{address}/set.zip"], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
        outputs = [run.communicate(timeout=300)[0] for run in runs]
    finally:
        server.shutdown()
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert [len(listing.list_split(target, split).files) for split in COUNTS] == [4, 4]
    assert sorted(path.name for path in target.parent.iterdir()) == ["cats_and_dogs_filtered", "downloads"]
    assert photo_download.archive_problem(target.parent / "downloads" / photo_download.ARCHIVE_NAME) is None


def test_a_download_with_another_hash_is_refused_and_leaves_nothing(tmp_path):
    address, server = serve_files({"file": b"0123456789"})
    try:
        with pytest.raises(download.DownloadFailed, match="md5 is 781e5e245d69b566979b86e28d23f2c7, not the published"):
            download.fetch(f"{address}/file", tmp_path / "file", ("md5", "0" * 32))
        assert list(tmp_path.iterdir()) == []
        assert download.fetch(f"{address}/file", tmp_path / "file") == hashlib.sha256(b"0123456789").hexdigest()
    finally:
        server.shutdown()


def test_a_truncated_cached_weights_file_is_removed_and_downloaded_again(tmp_path, monkeypatch, capsys,
                                                                          random_weights_file):
    whole = random_weights_file.read_bytes()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(weights, "DOWNLOAD_MD5", hashlib.md5(whole).hexdigest())
    cached = weights.cached_weights_file()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(whole[: len(whole) // 3])  # An interrupted download of an older version: still HDF5.
    monkeypatch.setattr(weights, "DOWNLOAD_URL", "http://127.0.0.1:9/none.h5")
    with pytest.raises(SuiteError) as raised:
        weights.resolve_weights("imagenet")
    message = str(raised.value)
    assert message.startswith(f"The cached weights file {cached} was damaged") and "was removed" in message
    assert "Could not download" in message and f"VGG16_WEIGHTS={cached}" not in message and not cached.exists()
    cached.write_bytes(whole[: len(whole) // 3])
    address, server = serve_files({"vgg16.h5": whole})
    monkeypatch.setattr(weights, "DOWNLOAD_URL", f"{address}/vgg16.h5")
    try:
        choice = weights.resolve_weights("imagenet")
    finally:
        server.shutdown()
    assert choice.path == cached and cached.read_bytes() == whole and "was damaged" in capsys.readouterr().out


# 6. Workers end with their runner, however it ends; the runner treats SIGHUP like SIGTERM.

def test_a_worker_ends_when_its_runner_is_killed():
    worker = ("import time; from lib.run import cluster; cluster.end_with_parent(0.2); time.sleep(120)")
    parent = ("import os, subprocess, sys, time; from lib.run import cluster; "
              f"child = subprocess.Popen([sys.executable, '-c', {worker!r}], start_new_session=True, "
              "env={**os.environ, cluster.PARENT_VARIABLE: str(os.getpid())}); print(child.pid, flush=True); "
              "time.sleep(120)")
    runner_process = subprocess.Popen([sys.executable, "-c", parent], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    worker_pid = int(runner_process.stdout.readline())
    time.sleep(1.0)
    assert Path(f"/proc/{worker_pid}").exists()
    runner_process.kill()
    runner_process.wait()
    assert gone(worker_pid, 10), "the worker outlived its runner"


def gone(pid: int, seconds: float) -> bool:
    """Whether process `pid` ends (or is a zombie nobody has reaped yet) within `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text():
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


# 7. What a local cluster exposes.

def test_a_local_cluster_says_what_it_exposes():
    message = cluster.exposure([41001, 41002])
    assert "TCP ports 41001, 41002 on every network interface" in message and "without authentication" in message
    assert "firewall" in message and "docs/troubleshooting-and-security.md" in message


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the listening sockets from /proc")
def test_tensorflow_still_binds_every_interface_whatever_tf_config_names():
    """What the runner says when workers start, and the docs, hold while this holds: when it fails, TensorFlow has
    learnt to listen on the address given, and both can say so."""
    code = ("import sys; import lib; tf = lib.load_tensorflow(); from lib.run import cluster; "
            "port = cluster.free_ports(1)[0]; "
            "tf.distribute.Server(tf.train.ClusterSpec({'worker': [f'127.0.0.1:{port}']}), job_name='worker', "
            "task_index=0, start=True); "
            "rows = [line.split() for name in ('/proc/net/tcp', '/proc/net/tcp6') for line in open(name)][1:]; "
            "print([row[1] for row in rows if row[3] == '0A' and row[1].endswith(':%04X' % port)])")
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    listening = eval(result.stdout.strip().splitlines()[-1])
    assert listening and all(set(address.split(":")[0]) == {"0"} for address in listening), listening


# 8. The smaller items.

def test_gpu_memory_is_taken_as_needed_in_the_runner_and_its_kernels_unless_the_user_says_otherwise():
    """The runner times batches on the GPU for its forecast and lives on while a stage's kernel (a child process,
    which inherits its environment) trains on the same GPU: neither may take all of its memory at once."""
    code = "import os, lib; print(os.environ['TF_FORCE_GPU_ALLOW_GROWTH'])"
    environment = {key: value for key, value in os.environ.items() if key != "TF_FORCE_GPU_ALLOW_GROWTH"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env=environment)
    assert result.stdout.split() == ["true"], result.stderr[-2000:]
    assert run_python(code, TF_FORCE_GPU_ALLOW_GROWTH="false").stdout.split() == ["false"]


def test_a_run_name_with_a_trailing_newline_is_refused():
    with pytest.raises(SuiteError, match="not usable as a folder name"):
        paths.check_run_name("run\n")
    assert paths.check_run_name("run-1.b_2") == "run-1.b_2"


def test_bad_yaml_in_set_and_a_malformed_from_manifest_are_one_clear_line(tmp_path, capsys):
    assert runner.main(["feature_extraction", "--profile", "smoke", "--set", "epochs=[1"]) == 2
    error = capsys.readouterr().err
    assert "SET 'epochs=[1': the value is not valid YAML" in error and "Traceback" not in error
    for content in ("{not json", '{"stages": {"01_feature_extraction": {}}}', '{"stages": {"bogus": {}}}', "[]"):
        (tmp_path / "manifest.json").write_text(content)
        assert runner.main(["feature_extraction", "--from", str(tmp_path / "manifest.json")]) == 2
        error = capsys.readouterr().err
        assert "is not a run's manifest with the parameters of its stages" in error and "Traceback" not in error


def test_a_full_disk_while_writing_text_is_one_clear_error(tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(SuiteError, match="disk filled up while writing .*metrics.json.*CACHE_DIR or OUTPUTS_DIR"):
        storage.write_json(tmp_path / "metrics.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_rename_into_a_folder_is_synced(tmp_path, monkeypatch):
    synced = []
    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda descriptor: (synced.append(os.readlink(f"/proc/self/fd/{descriptor}")),
                                                         fsync(descriptor)))
    storage.write_text(tmp_path / "folder" / "notes.txt", "text")
    assert len(synced) == 2 and synced[0].startswith(str(tmp_path / "folder" / ".notes."))  # The file's data,
    assert synced[1] == str(tmp_path / "folder")  # then, once renamed, the folder's entry.


def age(path: Path, seconds: float = 3600) -> Path:
    os.utime(path, (time.time() - seconds, time.time() - seconds), follow_symlinks=False)
    return path


def test_leftovers_of_killed_writers_are_removed_unless_recent_held_or_in_use(tmp_path):
    import socket

    outputs, temporary = tmp_path / "outputs", tmp_path / "tmp"
    stage = outputs / "run" / "01_feature_extraction"
    marks.make_folder(outputs / "cache" / "features", "conv features")  # As the suite makes them: marked.
    marks.make_folder(outputs / "run", "run")
    stage.mkdir(parents=True)
    temporary.mkdir()
    stale = [stage / ".metrics.abc123.partial.json", outputs / "cache" / "features" / ".x.k2j.partial.npz",
             outputs / "run" / ".predictions-old-4242", outputs / ".synthetic-q1w2", temporary / "vgg16-kernel-a1",
             temporary / "vgg16-worker-b2"]
    kept = [stage / "metrics.json", stage / ".01_feature_extraction.running.ipynb", outputs / "run" / ".runner.lock",
            stage / ".recent.abc.partial.json", stage / ".held.abc.partial.npz", temporary / "vgg16-kernel-held",
            temporary / "vgg16-kernel-live", temporary / "vgg16-worker-c3", temporary / "other-program",
            outputs / ".unpack-not-marked", outputs / ".notes.partial.txt"]  # Not proven the suite's.
    for path in stale + kept:
        if "." not in path.name or path.name.startswith((".predictions", ".unpack", ".synthetic")):
            path.mkdir()
        else:
            path.write_text("x")
    (outputs / ".synthetic-q1w2" / "train").mkdir()
    marks.mark(outputs / ".synthetic-q1w2", marks.SYNTHETIC_PHOTOS)  # Marked first, as the suite draws one.
    live = socket.socket(socket.AF_UNIX)  # A kernel of a version that takes no lock, still running.
    live.bind(str(temporary / "vgg16-kernel-live" / "kernel-1"))
    for path in stale + kept:
        if "recent" not in path.name:
            age(path, 2 * 24 * 3600 if path.name == "vgg16-worker-b2" else 3600)
    holds = [locks.try_lock(stage / ".held.abc.partial.npz"), locks.try_lock(temporary / "vgg16-kernel-held")]
    try:
        removed = housekeeping.remove_leftovers([outputs, outputs / "cache"], temporary=temporary)
    finally:
        live.close()
        for hold in holds:
            locks.release(hold)
    assert sorted(removed) == sorted(stale)
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)


def make(*arguments: str, **environment: str) -> subprocess.CompletedProcess:
    """`make` in the project with this virtual environment, which it is told is up to date (nothing installed)."""
    venv = Path(sys.prefix)
    return subprocess.run(["make", "-o", str(venv / ".installed"), f"VENV={venv}", *arguments], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, **environment})


def test_make_clean_removes_what_the_suite_made_in_outputs_dir_and_cache_dir(tmp_path):
    outputs, cache = tmp_path / "runs", tmp_path / "caches"
    for folder in (outputs / "a-run", outputs / "held-run", outputs / "scale"):
        marks.make_folder(folder, "run")
    for kind in ("images", "features"):
        marks.make_folder(cache / kind, paths.CACHE_KINDS[kind])
    for folder in (outputs / "a-run" / "01_feature_extraction", outputs / "held-run" / "01_feature_extraction",
                   outputs / "older-run" / "01_feature_extraction"):
        folder.mkdir(parents=True)
    storage.write_arrays(cache / "images" / "train-32px-a.npz", images=np.zeros(4))
    marks.record_files(outputs, ["compare.html"])
    for file in (outputs / "compare.html", outputs / "my-notes.txt", cache / "my-notes.txt"):
        file.write_text("x")
    hold = locks.hold_run(outputs / "held-run")
    try:
        result = make("clean", OUTPUTS_DIR=str(outputs), CACHE_DIR=str(cache))
    finally:
        locks.release(hold)
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in outputs.iterdir()) == ["held-run", "my-notes.txt", "older-run"]
    assert sorted(path.name for path in cache.iterdir()) == ["my-notes.txt"]
    assert f"Kept {outputs / 'held-run'}: a runner is working on it." in result.stdout
    refusal = [line for line in result.stdout.splitlines() if "not made by this suite" in line]
    assert len(refusal) == 1 and str(outputs / "older-run") in refusal[0] and "by hand" in refusal[0]


def test_make_passes_what_the_user_gives_as_text_never_as_a_command(tmp_path):
    marker = tmp_path / "marker"
    attempts = [("predict", "RUN=r", f"IMAGES=$(touch {marker}1)"),  # What Make itself swallows,
                ("predict", "RUN=r", f"IMAGES=$$(touch {marker}2)"),  # and what reached the shell before:
                ("predict", "RUN=r", f"IMAGES=`touch {marker}3`"),
                ("predict", "RUN=r", f'IMAGES=x"; touch {marker}4; "'),
                ("report", f"RUN=x; touch {marker}5"), ("compare", f"RUNS=a `touch {marker}6`"),
                ("seeds", "PROFILE=smoke", f"SEEDS=1 `touch {marker}8`"),
                ("run-feature-extraction", "PROFILE=smoke", f"SET=epochs=$$(touch$${{IFS}}{marker}7)")]
    for target, *variables in attempts:
        result = make(target, *variables, OUTPUTS_DIR=str(tmp_path / "outputs"))
        assert result.returncode != 0, (target, variables, result.stdout)
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("marker")) == []
    assert "parameter 'epochs' must be int, got '$(touch" in result.stderr  # The value arrived as text.


def test_a_sighup_stops_the_runner_as_sigterm_does(monkeypatch):
    from lib.run import execution

    monkeypatch.setattr(sys, "stdout", sys.stdout)  # Restored afterwards: the handler quiets the streams.
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    previous = signal.getsignal(signal.SIGHUP)
    execution.raise_on_hangup()
    try:
        with pytest.raises(execution.Terminated, match="SIGHUP"):
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(5)
        print("after the hangup, output that has nowhere to go is dropped")
    finally:
        signal.signal(signal.SIGHUP, previous)
