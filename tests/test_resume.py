"""Stages that resume where they stopped: batch streams addressable by batch number, the backup callback and its
state protocol, the runner keeping or discarding a backup, and a stage interrupted with Ctrl-C that ends as an
uninterrupted run does."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lib.core import paths, storage
from lib.run import freshness
from lib.study import backup, batches, training

ROOT = Path(__file__).resolve().parent.parent


def stream(shuffle=True) -> batches.BatchStream:
    inputs = np.arange(10, dtype=np.float32).reshape(10, 1)
    return batches.make_batch_stream(inputs, np.arange(10) % 2, 3, shuffle=shuffle, seed=7)


def _take(iterator, count: int) -> list:
    return [next(iterator)[0].reshape(-1).tolist() for _ in range(count)]


def test_a_stream_started_at_batch_k_reads_what_a_whole_stream_reads_from_k():
    whole = _take(stream().batches(), 12)
    assert _take(stream().batches(5), 7) == whole[5:12]  # Mid-pass too: 4 batches per pass.
    assert sorted(sum(whole[:4], [])) == list(range(10)) != sum(whole[:4], [])  # One pass each, shuffled ...
    assert whole[:4] != whole[4:8] and _take(stream().batches(), 12) == whole  # ... anew each pass, seeded.
    assert [batch[0].numpy().reshape(-1).tolist() for batch in stream(shuffle=False)] == [[0, 1, 2], [3, 4, 5],
                                                                                         [6, 7, 8], [9]]


class Counter:
    """A stand-in for a callback with state (a weight average, say): what the protocol has to carry."""

    def __init__(self):
        self.seen, self.total = 0, np.zeros(2)

    def get_state(self):
        return {"seen": self.seen, "total": self.total}

    def set_state(self, state):
        self.seen, self.total = state["seen"], state["total"]


class CountingCallback(Counter, training.keras.callbacks.Callback):
    def __init__(self):
        Counter.__init__(self)
        training.keras.callbacks.Callback.__init__(self)

    def on_epoch_end(self, epoch, logs=None):
        self.seen += 1
        self.total = self.total + np.array([epoch, logs["loss"]])


def train(folder: Path, epochs: int, parameters: dict):
    """A tiny model with Dropout, seeded, trained with the stages' callbacks and a backup in `folder`."""
    keras = training.keras
    training.seed_everything(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dropout(0.5),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.01), loss="binary_crossentropy",
                  metrics=["accuracy"])
    generator = np.random.default_rng(0)
    inputs, labels = generator.normal(size=(40, 4)).astype("float32"), np.arange(40) % 2
    data = batches.make_batch_stream(inputs, labels, 8, shuffle=True, seed=5)
    counter, best = CountingCallback(), training.BestEpoch()
    restorer = backup.BackupAndRestore(folder, "01_feature_extraction", parameters)
    callbacks = [training.CachedValidation(model, inputs[:10], labels[:10]), restorer, best, counter]
    fitted = training.fit(model, data, epochs=epochs, callbacks=callbacks, verbose=0)
    return fitted, [weight.copy() for weight in model.get_weights()], counter


def test_a_phase_stopped_after_epoch_k_resumes_there_and_ends_as_an_uninterrupted_one(tmp_path, capsys):
    whole, whole_weights, whole_counter = train(tmp_path / "whole", 6, {"epochs": 6})
    train(tmp_path / "cut", 3, {"epochs": 6})  # Stopped after epoch 3: its backup says so.
    assert json.loads(str(np.load(tmp_path / "cut" / "training.npz")["meta"]))["epochs_done"] == 3
    capsys.readouterr()
    resumed, resumed_weights, resumed_counter = train(tmp_path / "cut", 6, {"epochs": 6})
    assert "Resuming 01_feature_extraction at epoch 4 of 6 (backed up after epoch 3)." in capsys.readouterr().out
    assert resumed.rows == whole.rows and resumed.best_epoch == whole.best_epoch
    for ours, theirs in zip(resumed_weights, whole_weights):
        np.testing.assert_array_equal(ours, theirs)
    assert resumed_counter.seen == whole_counter.seen == 6
    np.testing.assert_array_equal(resumed_counter.total, whole_counter.total)


def test_a_backup_made_with_other_parameters_is_discarded_with_a_message(tmp_path, capsys):
    train(tmp_path, 2, {"epochs": 4, "dropout": 0.5})
    capsys.readouterr()
    fitted, _, _ = train(tmp_path, 3, {"epochs": 4, "dropout": 0.3})
    assert ("Discarded the backup of 01_feature_extraction after epoch 2: parameters changed: dropout 0.5 -> 0.3"
            in capsys.readouterr().out)
    assert len(fitted.rows) == 3


def fake_backup(run: str, stem: str, epochs_done: int) -> Path:
    folder = paths.backup_dir(paths.stage_dir(run, stem))
    storage.write_arrays(folder / "training.npz", meta=np.array(json.dumps({"epochs_done": epochs_done})))
    return folder


def test_the_runner_keeps_a_backup_when_nothing_changed_and_discards_it_otherwise():
    values = {"epochs": 150, "seed": 42}
    inputs = {"dataset_sha256": "a", "weights_sha256": "b", "notebook_code_sha256": "c", "code": {},
              "environment": {"keras": "3.15.1"}, "earlier_stages": {}}
    folder = fake_backup("run", "01_feature_extraction", 60)
    assert freshness.settle_backup("01_feature_extraction", "run", values, inputs, force=False).endswith(
        "(epochs done: training 60): it has no record of its inputs")  # Made outside the runner: in doubt, discarded.
    assert not (folder / "training.npz").exists() and (folder / "inputs.json").is_file()
    fake_backup("run", "01_feature_extraction", 60)
    assert freshness.settle_backup("01_feature_extraction", "run", values, inputs, force=False) == (
        "resuming from the backup of the interrupted attempt (epochs done: training 60)")
    assert (folder / "training.npz").is_file()
    changed = {**inputs, "environment": {"keras": "3.16.0"}}
    message = freshness.settle_backup("01_feature_extraction", "run", {**values, "seed": 7}, changed, force=False)
    assert message.startswith("discarded the backup of the interrupted attempt (epochs done: training 60)")
    assert "seed 42 -> 7" in message and "keras 3.15.1 -> 3.16.0" in message and not (folder / "training.npz").exists()
    fake_backup("run", "01_feature_extraction", 60)
    assert freshness.settle_backup("01_feature_extraction", "run", {**values, "seed": 7}, changed,
                                   force=True).endswith(": FORCE=1")
    assert not (folder / "training.npz").exists()


@pytest.mark.slow
def test_a_stage_interrupted_with_ctrl_c_resumes_and_ends_as_an_uninterrupted_run(tmp_path):
    """Stage 1 on the smoke profile for 150 epochs: once straight through, once stopped with SIGINT to the runner
    after epoch 60 and run again; the second says it resumes, starts after epoch 1, and ends the same."""
    environment = {key: value for key, value in os.environ.items() if key not in {"DATA_DIR", "VGG16_WEIGHTS"}}
    environment.update(OUTPUTS_DIR=str(tmp_path / "outputs"), PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "lib.runner", "feature_extraction", "--profile", "smoke", "--set", "epochs=150",
               "--no-forecast"]

    def run(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([*command, "--run", name], cwd=ROOT, env=environment, capture_output=True, text=True,
                              timeout=900)

    assert run("whole").returncode == 0
    process = subprocess.Popen([*command, "--run", "cut"], cwd=ROOT, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # Even if ignored here.
    for line in process.stdout:
        epoch = re.match(r"\s*epoch (\d+)/150", line)  # The console's line per epoch.
        if epoch and int(epoch.group(1)) > 61:
            process.send_signal(signal.SIGINT)  # Ctrl-C: epoch 61 (at least) is backed up.
            break
    printed = process.stdout.read()
    assert process.wait(timeout=300) == 130, printed[-2000:]
    stage = tmp_path / "outputs" / "cut" / "01_feature_extraction"
    assert not (stage / "metrics.json").exists() and (stage / "backup" / "training.npz").is_file()
    again = run("cut")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    resumed_at = int(re.search(r"Resuming 01_feature_extraction at epoch (\d+) of 150", again.stdout).group(1))
    assert resumed_at > 61 and "resuming from the backup" in again.stdout
    assert re.search(r"^\s*epoch 1/150", again.stdout, re.M) is None
    whole, cut = (json.loads((tmp_path / "outputs" / name / "01_feature_extraction" / "metrics.json").read_text())
                  for name in ("whole", "cut"))
    for key in ("best_epoch", "epochs_run", "val_accuracy", "val_loss", "test_accuracy"):
        assert cut[key] == whole[key], key
    history = [(tmp_path / "outputs" / name / "01_feature_extraction" / "history.csv").read_text()
               for name in ("whole", "cut")]
    assert history[0] == history[1] and not (stage / "backup").exists()  # The backup goes when the stage completes.
    assert len(list((stage / "logs").rglob("events.out.tfevents.*"))) >= 2  # TensorBoard: both attempts' epochs.
