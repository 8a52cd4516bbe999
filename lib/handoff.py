"""What one stage hands the next inside a run folder: stage 1's classifier, stage 2's whole model.

A later stage only starts from an earlier one's result when that result is complete (its
`metrics.json` exists) and was made from the same weights file, image size, preprocessing and compute
precision; otherwise `auto` starts from scratch and says why, and `previous` stops with an error.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from lib import SuiteError, reporting, storage
from lib.weights import WeightsChoice

ARTIFACTS = {"01_feature_extraction": "classifier.keras", "02_data_augmentation": "model.keras"}


@dataclasses.dataclass
class Start:
    """Where a stage starts: `path` of the earlier stage's model, or None for scratch, and why."""

    path: Path | None
    description: str

    @property
    def from_previous(self) -> bool:
        return self.path is not None


def find_previous(output_folder: Path, previous_stage: str, start_from: str, weights: WeightsChoice,
                  image_size: int, preprocessing: str, precision: str | None = None) -> Start:
    """Decide the start of a stage from `start_from` (`auto`, `previous` or `scratch`)."""
    if start_from == "scratch":
        return Start(None, "from scratch (start_from=scratch)")
    folder = Path(output_folder).parent / previous_stage
    artifact = folder / ARTIFACTS[previous_stage]
    metrics_file = folder / reporting.METRICS_FILE
    reason = None
    if not (artifact.is_file() and metrics_file.is_file()):
        reason = f"{previous_stage} has not completed in this run ({folder})"
    else:
        metrics = storage.read_json(metrics_file)
        checks = [("weights_sha256", weights.sha256), ("image_size", image_size), ("preprocessing", preprocessing)]
        if precision is not None:
            checks.append(("precision", precision))
        for key, value in checks:
            if metrics.get(key, value if key == "precision" else None) != value:
                reason = f"{previous_stage} used {key}={metrics.get(key)!r}, this stage {value!r}"
                break
    if reason is None:
        return Start(artifact, f"from {previous_stage}'s trained {'classifier' if previous_stage.startswith('01') else 'model'}")
    if start_from == "previous":
        raise SuiteError(f"start_from=previous, but {reason}. Run {previous_stage} first in the same run, "
                         "or set start_from to auto or scratch.")
    return Start(None, f"from scratch ({reason})")


def warm_start_classifier(classifier, start: Start) -> None:
    """Copy the weights of the earlier stage's classifier into `classifier` when `start` says so."""
    if start.from_previous:
        from lib import models

        classifier.set_weights(models.load_model(start.path).get_weights())


def conv_base_and_classifier(start: Start, weights: WeightsChoice, image_size: int, dropout: float):
    """The earlier stage's trained conv base and classifier, or new ones; the conv base frozen either way."""
    from lib import models

    if start.from_previous:
        previous = models.load_model(start.path)
        conv_base, classifier = previous.get_layer("vgg16"), previous.get_layer("classifier")
    else:
        conv_base = models.build_conv_base(weights, image_size)
        classifier = models.build_classifier(conv_base.output_shape[1:], dropout)
    conv_base.trainable = False
    return conv_base, classifier
