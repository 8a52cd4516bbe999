"""`PROFILE=auto`: the full reference schedule on a GPU; on a CPU, a schedule sized to the machine."""
from __future__ import annotations

from typing import Any

from lib import devices, params


def auto_profile(run: str, budget_minutes: float | None) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
    """The profile PROFILE=auto runs, the sentence saying why, and the sizing it did (None: none needed)."""
    gpus = devices.gpu_descriptions()
    if gpus:
        return (params.load_profile("full"),
                f"PROFILE=auto chose 'full': TensorFlow sees {len(gpus)} GPU(s) ({', '.join(gpus)}).", None)
    return (params.load_profile("cpu"),
            "PROFILE=auto chose 'cpu': TensorFlow sees no GPU, so the reference schedule would take hours.", None)
