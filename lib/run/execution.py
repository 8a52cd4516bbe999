"""Executing one stage notebook with papermill and rendering its HTML report, whatever way it ends.

The notebook runs into `.<stem>.running.ipynb` beside its final name and is renamed once the kernel is
done with it, finished or not, so the report always shows how far it got. Every way a stage can end
becomes one exception with a one-line message naming the stage, what happened and what to do:
a cell error, the kernel dying (killed for memory, a crash in a native library), a cell running past the
cell timeout, the kernel failing to start, Ctrl-C, SIGTERM and SIGHUP (a closed terminal). The kernel is shut down
in every case; a runner killed outright (SIGKILL) leaves a kernel that stops itself within a second (ipykernel
polls its parent), which the tests check, and so do a local cluster's workers (`lib.run.cluster.end_with_parent`).
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from lib import SuiteError
from lib.core import locks, paths, stages, storage
from lib.pages import report
from lib.run import cluster, console

# A cell running longer than this is stopped: generous, since the longest cells train for hours on a CPU.
DEFAULT_CELL_TIMEOUT = 12 * 3600
KERNEL_START_TIMEOUT = 120


class StageFailed(SuiteError):
    """A stage ended without completing; `status` is `failed` or `interrupted`."""

    def __init__(self, message: str, status: str = "failed"):
        super().__init__(message)
        self.status = status


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP), handled like Ctrl-C so that the stage ends cleanly and the run is marked interrupted;
    its argument is the signal's name."""


def raise_on_sigterm() -> None:
    """Turn SIGTERM into `Terminated` in this process (the runner), so cleanup runs as for Ctrl-C."""
    def handler(signum, frame):
        raise Terminated(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)


class _QuietStream:
    """A standard stream whose failed writes are dropped: after SIGHUP the terminal may be gone, and what the runner
    still says while it cleans up must not cut the clean-up short."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError, ValueError):
            return self._stream.write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def raise_on_hangup() -> None:
    """SIGHUP (the terminal closed, an SSH session dropped) stops the runner as SIGTERM does, instead of killing it
    before it can stop its kernel and workers and close the manifest."""
    def handler(signum, frame):
        sys.stdout, sys.stderr = _QuietStream(sys.stdout), _QuietStream(sys.stderr)
        raise Terminated(signal.Signals(signum).name)

    signal.signal(signal.SIGHUP, handler)


def configure_logging(verbose: bool = False) -> None:
    """papermill's log to standard output, one plain line at a time: with `verbose` everything it says (each cell
    and each output as it runs), else only its warnings (the console shows the kernel's lines: `lib.run.console`)."""
    import logging

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("papermill")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False


def _running_cell(notebook_file: Path) -> str:
    """`[N]` of the cell papermill marked as running (or the last one that started), or `?`."""
    try:
        cells = storage.read_json(notebook_file)["cells"]
    except (OSError, ValueError, KeyError):
        return "?"
    started = [cell for cell in cells if cell.get("metadata", {}).get("papermill", {}).get("status")
               in {"running", "failed"}]
    if not started:
        return "?"
    cell = started[-1]
    return str(cell.get("execution_count") or f"cell {cells.index(cell) + 1}")


def _failure(error: BaseException, stem: str, partial: Path, cell_timeout: int) -> StageFailed:
    """The one-line message for each way a stage can end early."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    if isinstance(error, PapermillExecutionError) and error.ename in {"DeadlineExceededError", "UnavailableError"}:
        return StageFailed(f"{stem} failed in cell [{error.exec_count}]: another worker of the cluster did not "
                           f"answer ({error.ename}): it died or is more than SUITE_WORKER_TIMEOUT seconds behind. See "
                           "its log (outputs/<run>/workers/ on a WORKERS cluster, its own output on a cluster of "
                           "machines), then run the same command again on every machine.")
    if isinstance(error, PapermillExecutionError):
        first_line = str(error.evalue).splitlines()[0] if error.evalue else ""
        return StageFailed(f"{stem} failed in cell [{error.exec_count}]: {error.ename}: {first_line}")
    cell = _running_cell(partial)
    if isinstance(error, Terminated):
        return StageFailed(f"{stem} was stopped by {error.args[0] if error.args else 'SIGTERM'} in cell [{cell}]; it "
                           "is left incomplete and will be redone by the same command.", "interrupted")
    if isinstance(error, KeyboardInterrupt):
        return StageFailed(f"{stem} was interrupted (Ctrl-C) in cell [{cell}]; it is left incomplete and will be "
                           "redone by the same command.", "interrupted")
    if isinstance(error, CellTimeoutError):
        return StageFailed(f"{stem}: cell [{cell}] ran longer than the cell timeout ({cell_timeout} s) and was "
                           "stopped. If it was still working, run again with a larger CELL_TIMEOUT=<seconds>.")
    if isinstance(error, DeadKernelError):
        return StageFailed(f"{stem}: the kernel died in cell [{cell}] (killed for lack of memory, or a crash in a "
                           "native library). Check free memory (a smaller augmentation_pool or "
                           "max_images_per_class needs less), then run the same command again.")
    if cell == "?" and isinstance(error, (RuntimeError, TimeoutError)):
        return StageFailed(f"{stem}: the notebook's kernel did not start ({type(error).__name__}: {error}). "
                           "Check that `make setup` completed (.venv has ipykernel), then run again.")
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return StageFailed(f"{stem}: the disk is full ({error}). Free some space (outputs/cache can go), then "
                           "run the same command again.")
    return StageFailed(f"{stem} stopped in cell [{cell}] on an unexpected error ({type(error).__name__}: {error}); "
                       "it is left incomplete and will be redone by the same command.")


def kernel_manager():
    """A kernel manager that talks to its kernel over local IPC sockets rather than TCP, in a folder of its
    own (runners working at the same time must not share socket names). Asynchronous, as nbclient's own: with
    a blocking client, waiting for a reply would never notice a dead kernel."""
    from jupyter_client.manager import AsyncKernelManager

    sockets = tempfile.mkdtemp(prefix="vgg16-kernel-")
    manager = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "kernel"),
                                 connection_file=os.path.join(sockets, "connection.json"))
    manager.sockets_lock = locks.try_lock(sockets)  # Spared by the clean-up of leftovers while the kernel lives.
    return manager


def stop_kernel(kernel_manager) -> None:
    """Kill the kernel's process group if it still runs, and remove its connection file and sockets.

    Plain process calls, no event loop: after Ctrl-C or SIGTERM, nbclient's interrupted coroutine is still
    pending in its loop and would block any call that runs the loop (waiting for a reply from the kernel).
    """
    process = getattr(getattr(kernel_manager, "provisioner", None), "process", None)
    if process is not None and process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # The kernel runs in a session of its own.
        except (ProcessLookupError, PermissionError):
            process.kill()
        process.wait(timeout=30)
    if kernel_manager.connection_file:
        storage.remove(kernel_manager.connection_file)
    shutil.rmtree(os.path.dirname(kernel_manager.ip), ignore_errors=True)
    locks.release(getattr(kernel_manager, "sockets_lock", None))


def _cluster_outcome(workers_cluster, stem: str, failure: StageFailed | None) -> StageFailed | None:
    """The stage's failure once its cluster's workers are finished or stopped: a worker's failure comes first
    (the chief only saw its kernel stopped, or a collective operation time out)."""
    if workers_cluster is None:
        return failure
    os.environ.pop("TF_CONFIG", None)
    worker_failure = workers_cluster.finish(chief_succeeded=failure is None)
    if worker_failure and (failure is None or failure.status != "interrupted"):
        return StageFailed(f"{stem}: {worker_failure}; the stage is left incomplete. Run the same command again "
                           "once the cause is fixed.")
    return failure


@contextlib.contextmanager
def signals_held():
    """Ctrl-C, SIGTERM and SIGHUP held for the length of the block (the kernel's clean-up: seconds), then acted on:
    the handlers are restored and the first signal that came meanwhile is raised again, so that a Ctrl-C during
    the clean-up still stops the runner once the clean-up is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    held = {number: signal.signal(number, lambda number, frame: arrived.append(number))
            for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for number, handler in held.items():
            signal.signal(number, handler)
        if arrived:
            signal.raise_signal(arrived[0])


def run_notebook(stem: str, output_file: Path, parameters: dict[str, Any], manager,
                 cell_timeout: int | None = None, verbose: bool = True) -> None:
    """papermill: the stage notebook `stem` with `parameters` into `output_file`, in the kernel of `manager`,
    from `notebooks/`; with `verbose` each cell's output logged as it comes, else the lines worth a line of what the
    kernel prints (`lib.run.console`)."""
    import papermill

    streams = {} if verbose else {"stdout_file": console.KernelLines(), "stderr_file": console.KernelLines()}
    papermill.execute_notebook(
        str(stages.get(stem).notebook), str(output_file), parameters=parameters, kernel_name="python3",
        cwd=str(paths.NOTEBOOKS_DIR), log_output=verbose, progress_bar=False, km=manager,
        execution_timeout=cell_timeout, start_timeout=KERNEL_START_TIMEOUT, **streams,
    )


def execute(stem: str, folder: Path, parameters: dict[str, Any], cell_timeout: int = DEFAULT_CELL_TIMEOUT,
            workers: int = 1, verbose: bool = False) -> float:
    """Run the stage notebook `stem` with `parameters` into `folder/<stem>.ipynb` and render
    `<stem>.html`; return the seconds it took. Raises `StageFailed` however it ends early. With `workers` > 1
    this kernel is the chief of a local cluster (`lib.run.cluster`) whose other workers run beside it."""
    executed, partial = folder / f"{stem}.ipynb", folder / f".{stem}.running.ipynb"
    manager = kernel_manager()
    workers_cluster = cluster.LocalCluster(workers, folder.parent, stem) if workers > 1 else None
    started = time.time()
    failure = None
    try:
        if workers_cluster:
            workers_cluster.start(parameters)
            workers_cluster.watch(lambda: stop_kernel(manager))
            os.environ["TF_CONFIG"] = cluster.tf_config(workers_cluster.ports, 0)  # For the chief's kernel.
        run_notebook(stem, partial, parameters, manager, cell_timeout, verbose)
    except BaseException as error:  # Every way out, Ctrl-C and SIGTERM included, ends the same way.
        failure = _failure(error, stem, partial, cell_timeout)
    finally:
        with signals_held():  # A second Ctrl-C must not cut the clean-up short.
            stop_kernel(manager)
            failure = _cluster_outcome(workers_cluster, stem, failure)
            if partial.exists():
                os.replace(partial, executed)
                storage.apply_umask(executed)
                try:
                    report.render(executed, folder / f"{stem}.html", stages.get(stem),
                                  banner=str(failure) if failure else None)
                except Exception as error:  # A failed stage's own message matters more than its report.
                    if not failure:
                        raise
                    print(f"(Could not render {stem}.html: {type(error).__name__}: {error})", flush=True)
    if failure:
        raise StageFailed(f"{failure} (see {folder / (stem + '.html')})", failure.status)
    return time.time() - started


def run_worker(stem: str, parameters: dict[str, Any], output_file: str | Path) -> int:
    """A worker other than the chief: execute the stage notebook in a kernel of its own (TF_CONFIG comes from
    the environment) into `output_file`, its log; the exit status says whether it completed."""
    configure_logging(verbose=True)  # A worker's log is a file: all of it.
    manager = kernel_manager()
    try:
        run_notebook(stem, Path(output_file), parameters, manager)
        return 0
    except Exception as error:
        print(f"ERROR: worker of {stem}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
              file=sys.stderr, flush=True)
        return 1
    finally:
        stop_kernel(manager)


def worker_main(arguments: list[str]) -> int:
    """A local cluster's worker (`lib.run.cluster` starts it with the stage, its parameters file and its output
    file): `run_worker`, ended by SIGTERM with its kernel stopped, and by its runner's end however that comes."""
    raise_on_sigterm()
    cluster.end_with_parent()
    try:
        return run_worker(arguments[0], storage.read_json(arguments[1]), arguments[2])
    except Terminated as stop:
        print(f"Worker of {arguments[0]} stopped by {stop}: its runner ended, or stopped it.", file=sys.stderr,
              flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
