"""A local multi-worker cluster for one stage: `make run-all WORKERS=2` (testing `distribution=multi_worker`).

This module only starts, watches and stops processes. The runner's own kernel is the chief (worker 0) and writes
the run folder as usual; workers 1..N-1 are processes of their own (`python -m lib.run.execution`, the workers'
entry point beside the notebook execution they share with the runner), each executing the same notebook with the
same parameters in a kernel of its own, on loopback addresses given through `TF_CONFIG`. They write nothing into
the run folder (a non-chief discards its writes); their executed notebooks and logs go to
`outputs/<run>/workers/`. A worker that dies stops the chief's kernel at once, and the stage fails with a
message naming the worker and its log; the workers still running when the chief ends are stopped (SIGTERM, so that
they stop their kernels, then SIGKILL), and a worker whose runner is gone, however it ended, stops itself.

Exposure: TensorFlow's gRPC server listens on every network interface whatever address `TF_CONFIG` names, and has
no authentication: while a stage runs on a local cluster, anyone who can reach this machine on its ports can have
the workers run code. `start` says so, with the ports; docs/troubleshooting-and-security.md says what to do.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lib import SuiteError
from lib.core import locks, paths, storage

WORKERS_DIR = "workers"
DECISIONS_FILE = "decisions.json"
# How long a machine's runner waits for the chief's runner to decide a stage (the stage before may take hours).
DECISION_WAIT_SECONDS = 24 * 3600
CLOCK_TOLERANCE_SECONDS = 300  # Decisions of a chief started this long before a worker still count.
# How long the workers may take to end once the chief's notebook has ended.
FINISH_SECONDS = 60
STOP_SECONDS = 10  # How long a worker sent SIGTERM may take to stop its kernel before it is killed.
PARENT_VARIABLE = "SUITE_RUNNER_PID"  # Tells a worker which process must outlive it.


def free_ports(count: int) -> list[int]:
    """`count` TCP ports free on the loopback interface now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for handle in sockets:
            handle.bind(("127.0.0.1", 0))
        return [handle.getsockname()[1] for handle in sockets]
    finally:
        for handle in sockets:
            handle.close()


def tf_config(ports: list[int], index: int) -> str:
    """`TF_CONFIG` for worker `index` of a loopback cluster (worker 0 is the chief)."""
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                       "task": {"type": "worker", "index": index}})


class LocalCluster:
    """Workers 1..N-1 of one stage's cluster, started, watched and stopped; the caller runs worker 0."""

    def __init__(self, workers: int, run_folder: Path, stem: str):
        self.stem, self.ports = stem, free_ports(workers)
        self.folder = run_folder / WORKERS_DIR
        self.processes: dict[int, subprocess.Popen] = {}
        self.failure: str | None = None
        self._done = threading.Event()

    def log(self, index: int) -> Path:
        return self.folder / f"{self.stem}-worker{index}.log"

    def _ended(self, index: int, code: int) -> str:
        return f"worker {index} of {len(self.ports)} ended with exit status {code} (see {self.log(index)})"

    def start(self, parameters: dict[str, Any]) -> None:
        """Start workers 1..N-1 on the same notebook and parameters, saying what will listen on the network."""
        self.folder.mkdir(parents=True, exist_ok=True)
        parameters_file = storage.write_json(self.folder / f"{self.stem}-parameters.json", parameters)
        print(exposure(self.ports), flush=True)
        for index in range(1, len(self.ports)):
            environment = {**os.environ, "TF_CONFIG": tf_config(self.ports, index), PARENT_VARIABLE: str(os.getpid())}
            with os.fdopen(locks.open_for_writing(self.log(index)), "w") as log:  # Not through a planted link.
                self.processes[index] = subprocess.Popen(
                    [sys.executable, "-m", "lib.run.execution", self.stem, str(parameters_file),
                     str(self.folder / f"{self.stem}-worker{index}.ipynb")],
                    cwd=paths.PROJECT_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)

    def watch(self, stop_chief: Callable[[], None]) -> None:
        """In the background: when a worker ends with an error, note it and stop the chief's kernel."""
        def loop():
            while not self._done.wait(1.0):
                for index, process in self.processes.items():
                    code = process.poll()
                    if code not in (None, 0) and self.failure is None:
                        self.failure = self._ended(index, code)
                        stop_chief()
                        return

        threading.Thread(target=loop, name="cluster-watch", daemon=True).start()

    def finish(self, chief_succeeded: bool) -> str | None:
        """Wait for the workers (a while, when the chief succeeded), stop the rest; the failure, if any."""
        self._done.set()
        deadline = time.time() + (FINISH_SECONDS if chief_succeeded else 0)
        for index, process in self.processes.items():
            try:
                code = process.wait(timeout=max(deadline - time.time(), 0.1))
            except subprocess.TimeoutExpired:
                code = None
            if code is None:
                _stop(process)
                if chief_succeeded and self.failure is None:
                    self.failure = f"worker {index} did not finish with the chief (see {self.log(index)})"
            elif code != 0 and self.failure is None:
                self.failure = self._ended(index, code)
        return self.failure


def _stop(process: subprocess.Popen) -> None:
    """Stop a worker (its own process group): SIGTERM, which makes it stop its kernel, then SIGKILL."""
    for number, seconds in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, number)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=seconds)
            return
        except subprocess.TimeoutExpired:
            continue


def exposure(ports: list[int]) -> str:
    """What a local cluster exposes, in words: TensorFlow binds every interface, without authentication."""
    return (f"NOTE: the cluster's {len(ports)} TensorFlow workers listen on TCP ports {', '.join(map(str, ports))} on "
            "every network interface of this machine (TensorFlow binds all of them, whatever TF_CONFIG says), without "
            "authentication, until the stage ends: anyone who can reach these ports can run code as you. Run "
            "WORKERS=N only on a machine that a firewall or a private network keeps others from reaching "
            "(docs/troubleshooting-and-security.md).")


def end_with_parent(seconds: float = 1.0) -> None:
    """In a worker: stop this process (SIGTERM) as soon as the runner that started it is gone, however it ended
    (SIGKILL, a closed terminal), checked every `seconds` in the background."""
    expected = int(os.environ.get(PARENT_VARIABLE) or os.getppid())

    def watch():
        while os.getppid() == expected:
            time.sleep(seconds)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def record_decision(folder: Path, invocation: str, stem: str, decision: str) -> None:
    """The chief's runner: `stem` will `run` or `skip` in the invocation started at `invocation` (ISO time)."""
    path = folder / DECISIONS_FILE
    decisions = storage.read_json(path) if path.is_file() else {}
    if decisions.get("invocation") != invocation:
        decisions = {"invocation": invocation, "stages": {}}
    decisions["stages"][stem] = decision
    storage.write_json(path, decisions)


def chief_decision(folder: Path, stem: str, since: float) -> bool:
    """Another machine's runner: wait for the chief's runner (started about when this one was, or later) to
    decide `stem`; True when it runs. A `SuiteError` when no decision comes."""
    import datetime

    deadline = time.time() + DECISION_WAIT_SECONDS
    while time.time() < deadline:
        try:
            decisions = storage.read_json(folder / DECISIONS_FILE)
            started = datetime.datetime.fromisoformat(decisions["invocation"]).timestamp()
        except (OSError, ValueError, KeyError):
            started = None
        if started is not None and started >= since - CLOCK_TOLERANCE_SECONDS and stem in decisions["stages"]:
            return decisions["stages"][stem] == "run"
        time.sleep(1.0)
    raise SuiteError(f"No decision about {stem} from the chief's runner in {DECISION_WAIT_SECONDS} s (in "
                     f"{folder / DECISIONS_FILE}): start the same command on the machine with TF_CONFIG index 0.")
