"""Scale-out: the distribution parameter, local multi-worker clusters, chief-only writes, large photo sets."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lib import SuiteError, runner
from lib.core import storage
from lib.run import cluster
from lib.study import batches, decode, distribute, imagestore, photos, synthetic

ROOT = Path(__file__).resolve().parent.parent
NO_RANDOMNESS = ["dropout=0", "rotation_degrees=0", "width_shift=0", "height_shift=0", "zoom=0",
                 "horizontal_flip=false", "vertical_flip=false"]


def test_auto_is_mirrored_only_with_several_gpus_and_unknown_names_are_refused():
    assert distribute.resolve_name("auto", []) == "none"
    assert distribute.resolve_name("auto", ["/gpu:0"]) == "none"
    assert distribute.resolve_name("auto", ["/gpu:0", "/gpu:1"]) == "mirrored"
    with pytest.raises(SuiteError, match="use one of none, mirrored, multi_worker, auto"):
        distribute.resolve_name("horovod", [])


def test_tf_config_gives_the_workers_and_this_ones_place_or_a_clear_error():
    config = {"cluster": {"worker": ["a:1", "b:2", "c:3"]}, "task": {"type": "worker", "index": 2}}
    assert distribute.cluster_spec({"TF_CONFIG": json.dumps(config)}) == (3, 2)
    config = {"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}}
    assert distribute.cluster_spec({"TF_CONFIG": json.dumps(config)}) == (2, 1)
    with pytest.raises(SuiteError, match="needs TF_CONFIG .* WORKERS=2"):
        distribute.cluster_spec({})
    with pytest.raises(SuiteError, match="not a usable cluster description"):
        distribute.cluster_spec({"TF_CONFIG": '{"cluster": {}}'})


def test_a_process_told_to_discard_its_writes_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(storage, "_discarding", False)  # Restored after the test.
    storage.discard_writes(True)  # What lib.study.distribute tells a worker other than the chief.
    storage.write_json(tmp_path / "run" / "metrics.json", {"a": 1})
    storage.write_arrays(tmp_path / "cache" / "features.npz", features=np.zeros(3))
    with storage.atomic_path(tmp_path / "run" / "model.keras") as temporary:
        temporary.write_text("model")
    assert not list(tmp_path.iterdir())
    storage.discard_writes(False)
    storage.write_json(tmp_path / "run" / "metrics.json", {"a": 1})
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_workers_refuse_a_tf_config_already_set_and_a_contradicting_distribution(monkeypatch):
    assert runner.cluster_overrides(1, {}) == {}
    assert runner.cluster_overrides(2, {}) == {"distribution": "multi_worker"}
    with pytest.raises(SuiteError, match="contradicts SET=distribution=mirrored"):
        runner.cluster_overrides(2, {"distribution": "mirrored"})
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(SuiteError, match="TF_CONFIG is already set"):
        runner.cluster_overrides(2, {})


def test_a_worker_that_dies_stops_the_chief_and_is_named(tmp_path):
    workers = cluster.LocalCluster(2, tmp_path, "01_feature_extraction")
    workers.folder.mkdir()
    workers.processes[1] = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"],
                                            start_new_session=True)
    stopped = []
    workers.watch(lambda: stopped.append(time.time()))
    deadline = time.time() + 10
    while not stopped and time.time() < deadline:
        time.sleep(0.1)
    assert stopped, "the chief was not stopped"
    message = workers.finish(chief_succeeded=False)
    assert "worker 1 of 2 ended with exit status 3" in message and "01_feature_extraction-worker1.log" in message


def test_a_worker_still_running_when_the_chief_fails_is_stopped(tmp_path):
    workers = cluster.LocalCluster(2, tmp_path, "01_feature_extraction")
    workers.processes[1] = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                            start_new_session=True)
    started = time.time()
    workers.finish(chief_succeeded=False)
    assert workers.processes[1].poll() is not None and time.time() - started < 10


def test_the_disk_store_reads_the_same_photos_as_memory(tiny_dataset):
    in_memory = photos.load_split(tiny_dataset, "train", 32)
    on_disk = photos.load_split(tiny_dataset, "train", 32, image_store="disk")
    assert isinstance(on_disk.images, imagestore.DiskImages) and on_disk.images.shape == in_memory.images.shape
    np.testing.assert_array_equal(on_disk.images[2:5], in_memory.images[2:5])
    np.testing.assert_array_equal(on_disk.images[[6, 1]], in_memory.images[[6, 1]])
    np.testing.assert_array_equal(on_disk.images[3], in_memory.images[3])
    np.testing.assert_array_equal(on_disk.images[:, :, ::-1][0:8], in_memory.images[:, :, ::-1])
    np.testing.assert_array_equal(np.asarray(on_disk.images), in_memory.images)
    np.testing.assert_array_equal(on_disk.labels, in_memory.labels)
    streamed = list(batches.make_batch_stream(on_disk.images, on_disk.labels, 3, shuffle=True, seed=1))
    assert sorted(np.concatenate([b[0].numpy() for b in streamed]).sum(axis=(1, 2, 3))) == sorted(
        in_memory.images.astype(int).sum(axis=(1, 2, 3)))


def test_an_interrupted_disk_store_is_not_taken_for_complete(tiny_dataset, monkeypatch):
    real = decode.decode_files

    def failing(*arguments, **keywords):
        real(*arguments, **keywords)
        raise KeyboardInterrupt

    monkeypatch.setattr(imagestore, "CHUNK", 4)
    monkeypatch.setattr(decode, "decode_files", failing)
    with pytest.raises(KeyboardInterrupt):
        photos.load_split(tiny_dataset, "train", 32, image_store="disk")
    monkeypatch.setattr(decode, "decode_files", real)
    cache_files = list((Path(os.environ["OUTPUTS_DIR"]) / "cache" / "images").glob("*"))
    assert not [path for path in cache_files if not path.name.startswith(".")]
    assert len(photos.load_split(tiny_dataset, "train", 32, image_store="disk")) == 8


def test_auto_store_goes_to_disk_when_the_photos_would_not_fit(monkeypatch, capsys):
    monkeypatch.setattr(imagestore, "available_memory", lambda: 24 * 10 ** 9)  # This kind of machine.
    assert imagestore.choose("auto", 3000, 150) == "memory"
    assert imagestore.choose("auto", 25000, 150) == "memory"
    assert imagestore.choose("auto", 100000, 150) == "disk"
    assert "reading them from a disk cache" in capsys.readouterr().out
    assert imagestore.choose("disk", 10, 32) == "disk"


def test_a_synthetic_set_of_a_given_size():
    folder, counts = synthetic.synthetic_of_size("synthetic:2000")
    assert counts == {"train": 1000, "validation": 500, "test": 500} and folder.name.endswith("_2000")
    with pytest.raises(SuiteError, match="synthetic:2000"):
        synthetic.synthetic_of_size("synthetic:many")


def run_suite(outputs: Path, *arguments: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in {"DATA_DIR", "VGG16_WEIGHTS", "CACHE_DIR"}}
    env.update(OUTPUTS_DIR=str(outputs), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "lib.runner", *arguments, "--profile", "smoke", "--no-forecast"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def metrics_of(outputs: Path, run: str, stem: str) -> dict:
    return json.loads((outputs / run / stem / "metrics.json").read_text())


@pytest.mark.slow
def test_mirrored_on_two_cpu_devices_trains_the_same_model_as_none(tmp_path):
    stems = ("01_feature_extraction", "02_data_augmentation", "03_fine_tuning")
    for distribution in ("none", "mirrored"):
        sets = [item for value in [*NO_RANDOMNESS, f"distribution={distribution}"] for item in ("--set", value)]
        result = run_suite(tmp_path / distribution, "all", "--run", "r", *sets)
        assert result.returncode == 0, result.stderr[-2000:]
    for stem in stems:
        none, mirrored = (metrics_of(tmp_path / d, "r", stem) for d in ("none", "mirrored"))
        assert (mirrored["distribution"], mirrored["replicas"], mirrored["workers"]) == ("mirrored", 2, 1)
        assert none["val_accuracy"] == mirrored["val_accuracy"] and none["test_accuracy"] == mirrored["test_accuracy"]
        # Two replicas sum their halves of each batch's gradient in another order; RMSprop's normalisation
        # magnifies such rounding where gradients are near zero (random conv-base weights), over a few epochs.
        for key in ("val_loss", "test_loss"):
            assert mirrored[key] == pytest.approx(none[key], rel=5e-3), (stem, key)
    manifest = json.loads((tmp_path / "mirrored" / "r" / "manifest.json").read_text())
    assert manifest["stages"]["02_data_augmentation"]["distribution"] == "mirrored"


@pytest.mark.slow
def test_mirrored_with_augmentation_dropout_and_a_pool_completes(tmp_path):
    result = run_suite(tmp_path, "all", "--run", "r", "--set", "distribution=mirrored", "--set", "augmentation_pool=2",
                       "--set", "replicas=4")
    assert result.returncode == 0, result.stderr[-2000:]
    assert metrics_of(tmp_path, "r", "03_fine_tuning")["replicas"] == 4
    result = run_suite(tmp_path, "feature_extraction", "--run", "odd", "--set", "distribution=mirrored",
                       "--set", "replicas=3")
    assert result.returncode == 2 and "batch_size=8 does not split evenly between the 3 replicas" in result.stderr


@pytest.mark.slow
def test_two_local_workers_run_stages_one_and_two_and_only_the_chief_writes(tmp_path):
    result = run_suite(tmp_path / "single", "feature_extraction", "data_augmentation", "--run", "r",
                       "--set", "augmentation_pool=2")
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_suite(tmp_path / "cluster", "feature_extraction", "data_augmentation", "--run", "r",
                       "--workers", "2", "--set", "augmentation_pool=2")
    assert result.returncode == 0, result.stderr[-2000:]
    single, clustered = tmp_path / "single" / "r", tmp_path / "cluster" / "r"

    def listing(root: Path) -> list[str]:
        """Every path under `root` but workers/, TensorBoard's event files by their folder (their names hold the
        time, host and process), as a sorted list: a second writer's extra event file would show."""
        return sorted(str(path.relative_to(root).parent / "events.out.tfevents") if ".tfevents." in path.name
                      else str(path.relative_to(root))
                      for path in root.rglob("*") if path.parts[len(root.parts)] != "workers")

    assert listing(clustered) == listing(single)  # No stray or partial files from a second writer.
    # The pool's two variants, one computed by each worker, are the variants one process computes.
    pools = [sorted((tmp_path / where / "cache" / "pool").glob("*.npz")) for where in ("single", "cluster")]
    assert len(pools[0]) == len(pools[1]) == 2
    for one, other in zip(*pools):
        np.testing.assert_array_equal(np.load(one)["features"], np.load(other)["features"])
    logged = sorted(path.name for path in (clustered / "workers").iterdir())
    for stem in ("01_feature_extraction", "02_data_augmentation"):
        assert {f"{stem}-worker1.log", f"{stem}-worker1.ipynb"} <= set(logged)
        assert "this is worker 1" in (clustered / "workers" / f"{stem}-worker1.log").read_text()
        metrics = metrics_of(tmp_path / "cluster", "r", stem)
        assert (metrics["distribution"], metrics["replicas"], metrics["workers"]) == ("multi_worker", 2, 2)
        assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] and 0 <= metrics["val_accuracy"] <= 1


@pytest.mark.slow
def test_a_stage_reads_its_photos_from_the_disk_store(tmp_path):
    result = run_suite(tmp_path, "all", "--run", "r", "--set", "image_store=disk")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "decoded train photos from" in result.stdout
    assert metrics_of(tmp_path, "r", "03_fine_tuning")["parameters"]["image_store"] == "disk"


@pytest.mark.slow
def test_a_cluster_of_runners_described_by_tf_config_runs_like_machines_sharing_a_file_system(tmp_path):
    ports = cluster.free_ports(2)
    env = {key: value for key, value in os.environ.items() if key not in {"DATA_DIR", "VGG16_WEIGHTS", "CACHE_DIR"}}
    env.update(OUTPUTS_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "lib.runner", "feature_extraction", "--profile", "smoke", "--run", "r",
               "--no-forecast", "--set", "distribution=multi_worker"]
    machines = [subprocess.Popen(command, cwd=ROOT, env={**env, "TF_CONFIG": cluster.tf_config(ports, index)},
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for index in (0, 1)]
    outputs = [machine.communicate(timeout=600)[0] for machine in machines]
    assert [machine.returncode for machine in machines] == [0, 0], outputs[1][-2000:] + outputs[0][-2000:]
    assert "as worker 1 of the cluster" in outputs[1]
    assert (tmp_path / "r" / "workers" / "01_feature_extraction-worker1.ipynb").is_file()
    metrics = metrics_of(tmp_path, "r", "01_feature_extraction")
    assert (metrics["distribution"], metrics["workers"]) == ("multi_worker", 2)
