"""Shared helpers of the VGG16 transfer-learning notebook suite.

Importing this package sets TensorFlow's process-wide switches before TensorFlow itself is imported:
oneDNN kernels on (25-45% faster VGG16 on the x86 CPUs this suite is measured on; TensorFlow only enables
them by default on some Intel CPUs) and C++ log noise down. Import `lib` before `tensorflow` for these to
take effect; a value the user already exported wins.
"""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


class SuiteError(Exception):
    """A problem with the user's input or environment, with a message that names the fix.

    Raised instead of letting TensorFlow fail deep inside a call; the runner prints it as one line.
    """
