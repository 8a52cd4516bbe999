"""What this machine computes with: the GPUs TensorFlow sees, native bfloat16, and the stages' precision.

The one place that decides the compute precision (the stages, the forecast and the benchmark ask here) and
the one place that refuses to run without a GPU when a profile asks for one.
"""
from __future__ import annotations

import os

import lib
from lib import SuiteError

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) under which bfloat16 still runs natively.
_BFLOAT16_ISAS = {"AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX512_CORE_AMX", "AVX10_1_512_AMX",
                  "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16", "DEFAULT", "ALL", ""}
GPU_REQUIRED = ("{where} asks for a GPU (require_gpu: true), but TensorFlow sees none. Use PROFILE=cpu (or auto), "
                "or SET=\"require_gpu=false augmentation_pool=8\" to run this schedule on the CPU anyway (hours: "
                "`make forecast` with the same SET says how many).")


def gpu_names() -> list[str]:
    """The GPUs TensorFlow sees, by device name (imports TensorFlow)."""
    return [device.name for device in lib.load_tensorflow().config.list_physical_devices("GPU")]


def gpu_descriptions() -> list[str]:
    """The GPUs TensorFlow sees, by model name where TensorFlow knows it (imports TensorFlow)."""
    tf = lib.load_tensorflow()
    return [tf.config.experimental.get_device_details(device).get("device_name", device.name)
            for device in tf.config.list_physical_devices("GPU")]


def require_gpu(required: bool, gpus: list[str], where: str = "This run") -> None:
    """Raise a `SuiteError` when a GPU is required and none is visible."""
    if required and not gpus:
        raise SuiteError(GPU_REQUIRED.format(where=where))


def check(required: bool) -> list[str]:
    """The GPUs TensorFlow sees; a `SuiteError` when `required` and there are none."""
    gpus = gpu_names()
    require_gpu(required, gpus)
    return gpus


def describe_devices(gpus: list[str]) -> str:
    """What the stages compute on, in a few words."""
    return ", ".join(gpus) if gpus else "CPU only (no GPU visible to TensorFlow)"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as handle:
            return set(next((line for line in handle if line.startswith("flags")), "").split(":", 1)[-1].split())
    except OSError:
        return set()


def cpu_has_bfloat16() -> bool:
    """Whether the conv base can compute bfloat16 natively here: AVX512-BF16 or AMX, with oneDNN on and not
    capped below them by `ONEDNN_MAX_CPU_ISA`. Without it bfloat16 is emulated, slower than float32."""
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") == "0":
        return False
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() not in _BFLOAT16_ISAS:
        return False
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def compute_policy(mixed_precision: bool, gpus: list[str]) -> str:
    """The Keras dtype policy the stages use: 16-bit compute where it is native (`mixed_float16` on a GPU,
    `mixed_bfloat16` on a CPU with native bfloat16) when `mixed_precision` asks for it, else float32."""
    if not mixed_precision:
        return "float32"
    if gpus:
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bfloat16() else "float32"


def describe_cpu() -> str:
    """CPU model, the CPUs this process may use, and the vector flags that decide its speed here."""
    import platform

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), model)
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return f"{model}, {usable} CPUs, flags {' '.join(flags) or 'none of avx2/avx512'}" + (
        f", ONEDNN_MAX_CPU_ISA={isa}" if isa else "")


def cpu_fields(described: str) -> dict:
    """`describe_cpu()`'s text (as a manifest records it) as a record's `model`, `cores`, `flags` and, where oneDNN
    was held below the CPU, `held_to`; a `SuiteError` when the text is not in that form."""
    import re

    found = re.fullmatch(r"(?P<model>.+), (?P<cores>\d+) CPUs?, flags (?P<flags>[^,]+)"
                         r"(?:, (?P<isa>ONEDNN_MAX_CPU_ISA=.+))?", described)
    if not found:
        raise SuiteError(f"The CPU {described!r} is not in the form 'MODEL, N CPUs, flags ...' that describe_cpu "
                         "writes.")
    flags = [] if found["flags"].startswith("none") else sorted(found["flags"].split())
    return {"model": found["model"], "cores": int(found["cores"]), "flags": flags,
            **({"held_to": found["isa"]} if found["isa"] else {})}
