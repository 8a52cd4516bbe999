"""What one stage hands the next inside a run folder: stage 1's classifier, stage 2's whole model.

A later stage only starts from an earlier one's result when that result is complete (its
`metrics.json` exists) and was made from the same weights file, image size, preprocessing and compute
precision; otherwise `auto` starts from scratch and says why, and `previous` stops with an error.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from lib import SuiteError, reporting, stages, storage
from lib.weights import WeightsChoice


@dataclasses.dataclass
class Start:
    """Where a stage starts: `path` of the earlier stage's model, or None for scratch, and why."""

    path: Path | None
    description: str

    @property
    def from_previous(self) -> bool:
        return self.path is not None


def find_start(stage: str, output_folder: Path, start_from: str, weights: WeightsChoice, image_size: int,
               preprocessing: str, precision: str | None = None) -> Start:
    """Decide where `stage` starts from `start_from` (`auto`, `previous` or `scratch`): the result of the
    stage before it in the same run folder, when that is complete and made the same way, or scratch."""
    if start_from == "scratch":
        return Start(None, "from scratch (start_from=scratch)")
    previous = stages.get(stages.get(stage).previous)
    folder = Path(output_folder).parent / previous.stem
    artifact = folder / previous.artifact
    metrics_file = folder / reporting.METRICS_FILE
    reason = None
    if not (artifact.is_file() and metrics_file.is_file()):
        reason = f"{previous.stem} has not completed in this run ({folder})"
    else:
        metrics = storage.read_json(metrics_file)
        checks = [("weights_sha256", weights.sha256), ("image_size", image_size), ("preprocessing", preprocessing)]
        if precision is not None:
            checks.append(("precision", precision))
        for key, value in checks:
            if metrics.get(key, value if key == "precision" else None) != value:
                reason = f"{previous.stem} used {key}={metrics.get(key)!r}, this stage {value!r}"
                break
    if reason is None:
        return Start(artifact, f"from {previous.stem}'s trained {Path(previous.artifact).stem}")
    if start_from == "previous":
        raise SuiteError(f"start_from=previous, but {reason}. Run {previous.stem} first in the same run, "
                         "or set start_from to auto or scratch.")
    return Start(None, f"from scratch ({reason})")


def save(stage: str, output_folder: Path, model) -> None:
    """Save the model a stage hands on (its registry `artifact`: stage 1's classifier, later the whole model)."""
    from lib import models

    path = Path(output_folder) / stages.get(stage).artifact
    models.save_model(model, path)
    print(f"Saved {path.name} for the next stage and for predictions.", flush=True)


def previous_history(stage: str, output_folder: Path) -> list[dict]:
    """The history rows of the stage before `stage` in the same run, labelled as its classifier phase."""
    previous = stages.get(stages.get(stage).previous)
    return reporting.read_history_csv(Path(output_folder).parent / previous.stem / reporting.HISTORY_FILE,
                                      phase=f"classifier (stage {previous.number})")


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
