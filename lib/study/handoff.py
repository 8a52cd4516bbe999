"""What one stage hands the next inside a run folder: stage 1's classifier, stage 2's whole model.

A later stage only starts from an earlier one's result when that result is complete (its
`metrics.json` exists) and was made from the same weights file, image size, preprocessing and compute
precision; otherwise `auto` starts from scratch and says why, and `previous` stops with an error.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from lib import SuiteError
from lib.core import records, stages
from lib.study import models
from lib.study.stage_run import StageRun
from lib.study.weights import WeightsChoice


@dataclasses.dataclass
class Start:
    """Where a stage starts: `path` of the earlier stage's model, or None for scratch, and why."""

    path: Path | None
    description: str

    @property
    def from_hand_off(self) -> bool:
        return self.path is not None


def find_start(stage: StageRun, start_from: str, weights: WeightsChoice) -> Start:
    """Decide where `stage` starts from `start_from` (`auto`, `previous` or `scratch`): the result of the
    stage before it in the same run folder, when that is complete and made the same way (weights, image size,
    preprocessing, precision), or scratch."""
    if start_from == "scratch":
        return Start(None, "from scratch (start_from=scratch)")
    previous = stages.get(stage.stage.previous)
    folder = stage.folder.parent / previous.stem
    hand_off_model = folder / previous.hand_off_model
    metrics = records.read_metrics(folder)
    reason = None
    if not (hand_off_model.is_file() and metrics is not None):
        reason = f"{previous.stem} has not completed in this run ({folder})"
    else:
        checks = [("weights_sha256", weights.sha256), ("image_size", stage.parameters["image_size"]),
                  ("preprocessing", stage.parameters["preprocessing"]), ("precision", stage.precision)]
        for key, value in checks:
            if metrics.get(key, value if key == "precision" else None) != value:
                reason = f"{previous.stem} used {key}={metrics.get(key)!r}, this stage {value!r}"
                break
    if reason is None:
        return Start(hand_off_model, f"from {previous.stem}'s trained {Path(previous.hand_off_model).stem}")
    if start_from == "previous":
        raise SuiteError(f"start_from=previous, but {reason}. Run {previous.stem} first in the same run, "
                         "or set start_from to auto or scratch.")
    return Start(None, f"from scratch ({reason})")


def previous_history(stage: StageRun) -> list[dict]:
    """The history rows of the stage before `stage` in the same run, labelled as its classifier phase."""
    previous = stages.get(stage.stage.previous)
    return records.read_history(stage.folder.parent / previous.stem / records.HISTORY_FILE,
                                phase=f"classifier (stage {previous.number})")


def warm_start_classifier(classifier, start: Start) -> None:
    """Copy the weights of the earlier stage's classifier into `classifier` when `start` says so."""
    if start.from_hand_off:
        classifier.set_weights(models.load_model(start.path).get_weights())


def conv_base_and_classifier(start: Start, weights: WeightsChoice, image_size: int, dropout: float):
    """The earlier stage's trained conv base and classifier, or new ones; the conv base frozen either way."""
    if start.from_hand_off:
        previous = models.load_model(start.path)
        conv_base, classifier = previous.get_layer("vgg16"), previous.get_layer("classifier")
    else:
        conv_base = models.build_conv_base(weights, image_size)
        classifier = models.build_classifier(conv_base.output_shape[1:], dropout)
    conv_base.trainable = False
    return conv_base, classifier
