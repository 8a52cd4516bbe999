"""The stages of the study, in the one registry every other module reads.

A stage is a notebook `notebooks/<stem>.ipynb` (paired with `<stem>.py`), a section of the run profiles, a
folder in each run, and a model file it hands on to the next stage. Adding a stage means adding a `Stage`
here, its notebook, its profile sections and its Make target.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from lib import SuiteError
from lib.core import paths


@dataclasses.dataclass(frozen=True)
class Reference:
    """A published result for a stage on this kind of split, with what differs from this suite."""

    source: str
    url: str
    val_accuracy: float | None
    test_accuracy: float | None
    differences: str


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of the study.

    `section` names its profile section and its command-line name; `hand_off_model` is the model file it saves
    for the next stage; `previous` is the stem of the stage it starts from; `trains_on` says how the
    forecast prices its training (`features`: a classifier on cached conv features, seconds; `photos`:
    augmented photos through the conv base, the expensive kind); `key_figure` is the figure its report shows
    beside the learning curves, before any code.
    """

    number: int
    stem: str
    section: str
    title: str
    hand_off_model: str
    course_notes_val_accuracy: float
    previous: str | None
    trains_on: str
    key_figure: str
    references: tuple[Reference, ...] = ()

    @property
    def aliases(self) -> tuple[str, ...]:
        return (self.stem, self.section, f"{self.number:02d}", str(self.number))

    @property
    def notebook(self) -> Path:
        return paths.NOTEBOOKS_DIR / f"{self.stem}.ipynb"

    @property
    def source(self) -> Path:
        """The jupytext percent-format twin of the notebook, for review, linting and editors."""
        return paths.NOTEBOOKS_DIR / f"{self.stem}.py"

    @property
    def heading(self) -> str:
        return f"{self.number}. {self.title}"


_CHOLLET_1 = ("Chollet, Deep Learning with Python, 1st ed., notebook 5.3",
              "https://github.com/fchollet/deep-learning-with-python-notebooks")
_CHOLLET_2 = ("Chollet, Deep Learning with Python, 2nd ed., chapter 8",
              "https://github.com/fchollet/deep-learning-with-python-notebooks")
_FIRST_EDITION = "150 px, pixels/255, the same 2000/1000 training/validation photos; test: 1000 other photos"
_SECOND_EDITION = "180 px, preprocess_input, 2000/1000 training/validation photos and a 2000-photo test split"

STAGES: tuple[Stage, ...] = (
    Stage(number=1, stem="01_feature_extraction", section="feature_extraction", title="Feature extraction",
          hand_off_model="classifier.keras", course_notes_val_accuracy=0.90, previous=None, trains_on="features",
          key_figure="confusion_matrix.png",
          references=(Reference(*_CHOLLET_1, val_accuracy=0.903, test_accuracy=None, differences=_FIRST_EDITION),
                      Reference(*_CHOLLET_2, val_accuracy=None, test_accuracy=0.969, differences=_SECOND_EDITION))),
    Stage(number=2, stem="02_data_augmentation", section="data_augmentation", title="Data augmentation",
          hand_off_model="model.keras", course_notes_val_accuracy=0.88, previous="01_feature_extraction",
          trains_on="photos",
          key_figure="augmented_examples.png",
          references=(Reference(*_CHOLLET_1, val_accuracy=0.96, test_accuracy=None,
                                differences=_FIRST_EDITION + "; validation read off the learning curve"),
                      Reference(*_CHOLLET_2, val_accuracy=None, test_accuracy=0.975, differences=_SECOND_EDITION))),
    Stage(number=3, stem="03_fine_tuning", section="fine_tuning", title="Fine tuning",
          hand_off_model="model.keras", course_notes_val_accuracy=0.91, previous="02_data_augmentation",
          trains_on="photos",
          key_figure="heatmaps.png",
          references=(Reference(*_CHOLLET_1, val_accuracy=0.975, test_accuracy=0.968, differences=_FIRST_EDITION),
                      Reference(*_CHOLLET_2, val_accuracy=None, test_accuracy=0.974, differences=_SECOND_EDITION))),
)
STEMS: tuple[str, ...] = tuple(stage.stem for stage in STAGES)


def get(name: str) -> Stage:
    """The stage named by its stem, section, number (`01` or `1`); a `SuiteError` listing the names if none."""
    for stage in STAGES:
        if name in stage.aliases:
            return stage
    known = ", ".join(alias for stage in STAGES for alias in stage.aliases[:3])
    raise SuiteError(f"Unknown stage {name!r}: use one of {known}, or 'all'.")


def by_section(section: str) -> Stage | None:
    """The stage whose profile section is `section`, or None."""
    return next((stage for stage in STAGES if stage.section == section), None)


def earlier(stem: str) -> tuple[Stage, ...]:
    """The stages before `stem`, in order."""
    return STAGES[: STEMS.index(stem)]
