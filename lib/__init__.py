"""Shared helpers of the VGG16 transfer-learning notebook suite.

Importing this package sets TensorFlow's process-wide switches before TensorFlow itself is imported:
oneDNN kernels on (25-45% faster VGG16 on the x86 CPUs this suite is measured on; TensorFlow only enables
them by default on some Intel CPUs), C++ log noise down, and GPU memory taken as needed rather than all at once
(the runner times a few batches on the GPU for its forecast and stays alive while each stage's kernel, another
process, trains on the same GPU). Import `lib` before `tensorflow` for these to
take effect; a value the user already exported wins.
"""
import os
import re

# A line of TensorFlow's own logging: its native (absl) log, e.g. "E0000 00:00:1764553044.301 12 util.h:123] ...",
# and its Python logger's "WARNING:tensorflow:..." lines. Kept out of the console and the reports.
TENSORFLOW_LOG_LINE = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d\d|WARNING:tensorflow:|WARNING: All log messages before absl)")

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")


class SuiteError(Exception):
    """A problem with the user's input or environment, with a message that names the fix.

    Raised instead of letting TensorFlow fail deep inside a call; the runner prints it as one line.
    """


def load_tensorflow():
    """Import TensorFlow and find its devices with TensorFlow's native start-up chatter kept out of the way.

    TensorFlow 2.21 prints INFO lines (oneDNN on, CUDA libraries not found on a CPU machine, cuInit
    failing without a GPU) straight to file descriptor 2 before its logging is configured, and
    `TF_CPP_MIN_LOG_LEVEL` does not hold them back; in a notebook they show as red error boxes. They go
    to /dev/null while TensorFlow starts; Python errors still propagate as usual. Returns the module.
    """
    import contextlib
    import sys

    @contextlib.contextmanager
    def native_stderr_silenced():
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # No real file descriptor 2 (some embedded interpreters).
            yield
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)

    with native_stderr_silenced():
        import tensorflow

        tensorflow.config.list_physical_devices("GPU")
    return tensorflow
