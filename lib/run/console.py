"""What the runner's console shows of a stage's kernel: the lines worth a line.

A stage's notebook prints its progress (devices and precision, decoding and extraction progress, Keras's line per
epoch, the result in a sentence); its cells also display figures, tables and model summaries, and TensorFlow's
native libraries write log lines to the kernel's stderr. The executed notebook and its report keep all of it. The
console shows only the lines the kernel prints, indented under the stage's heading, with Keras's two lines per
epoch joined into one, and without blank lines, TensorFlow's log lines, Keras's model summary tables and Python
warnings. `VERBOSE=1` shows everything instead (every cell, every output, as papermill logs them).
"""
from __future__ import annotations

import re
import sys
from typing import TextIO

from lib import TENSORFLOW_LOG_LINE

COLOURS = re.compile(r"\x1b\[[0-9;]*m")
SUMMARY_TABLE = re.compile(r"[┏┃┡│├└━─]|^Model: \"|^ *(?:Total|Trainable|Non-trainable|Optimizer) params:")
PYTHON_WARNING = re.compile(r"^\S.*:\d+: \w*Warning: ")
EPOCH = re.compile(r"^Epoch (\d+)/(\d+)$")
STEPS = re.compile(r"^\d+/\d+ - ")


def worth_a_line(line: str) -> bool:
    """Whether a line the kernel printed belongs on the console (Keras's epoch lines are handled apart)."""
    return bool(line.strip()) and not (TENSORFLOW_LOG_LINE.match(line) or SUMMARY_TABLE.search(line)
                                       or PYTHON_WARNING.match(line))


class KernelLines:
    """A writable stream for papermill's `stdout_file`/`stderr_file`: the kernel's output as it comes, shown on
    `out` a whole line at a time when it is worth a line (`worth_a_line`), each indented by `indent`."""

    def __init__(self, out: TextIO | None = None, indent: str = "    "):
        self.out, self.indent = out or sys.stdout, indent
        self.pending, self.epoch, self.after_warning = "", "", False

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.replace("\r\n", "\n").split("\n")
        for line in lines:
            self.line(COLOURS.sub("", line).rstrip())
        return len(text)

    def line(self, line: str) -> None:
        """Show one line, or hold it: Keras prints `Epoch 3/30` and the epoch's numbers on the next line."""
        if self.after_warning and line.startswith(" "):  # The source line Python prints under a warning.
            return
        self.after_warning = bool(PYTHON_WARNING.match(line))
        epoch = EPOCH.match(line)
        if epoch:
            self.epoch = f"epoch {epoch.group(1)}/{epoch.group(2)} - "
            return
        if self.epoch and STEPS.match(line):
            line, self.epoch = self.epoch + STEPS.sub("", line), ""
        if worth_a_line(line):
            print(self.indent + line, file=self.out, flush=True)

    def flush(self) -> None:
        self.out.flush()
