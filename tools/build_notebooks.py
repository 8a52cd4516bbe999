"""Write the three stage notebooks from the cell texts below, without outputs.

The notebooks are the product and are committed as `.ipynb`; this script is how they are edited so that
the three stay consistent (same parameter names, same closing cell). Run: `python tools/build_notebooks.py`.
"""
from __future__ import annotations

import json
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def markdown(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text.strip("\n")}


def code(text: str, tags: list[str] | None = None) -> dict:
    metadata = {"tags": tags} if tags else {}
    return {"cell_type": "code", "metadata": metadata, "execution_count": None, "outputs": [],
            "source": text.strip("\n")}


COLAB = code('''
# Google Colab only (elsewhere this cell does nothing): fetch the project, install what Colab lacks, and
# optionally mount Google Drive so that data_dir below can point at a folder there.
import os, subprocess, sys
REPOSITORY = os.environ.get("SUITE_REPOSITORY", "")  # git URL of your copy of this project
MOUNT_DRIVE = False  # True: mount Drive at /content/drive (then e.g. data_dir = "/content/drive/MyDrive/cats_and_dogs_small")
if "google.colab" in sys.modules:
    if not os.path.isfile("../lib/runner.py") and not os.path.isfile("/content/suite/lib/runner.py"):
        if not REPOSITORY:
            raise SystemExit("Set REPOSITORY in this cell to the git URL of the project (or upload it to /content/suite).")
        subprocess.run(["git", "clone", "--depth", "1", REPOSITORY, "/content/suite"], check=True)
    if os.path.isdir("/content/suite/notebooks"):
        os.chdir("/content/suite/notebooks")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "pyyaml", "pillow", "h5py"], check=True)
    if MOUNT_DRIVE:
        from google.colab import drive
        drive.mount("/content/drive")
''')

IMPORTS = code('''
import sys
import time
from pathlib import Path

# The project root is the first folder upwards that holds lib/ (notebooks/ when run from Jupyter or papermill).
ROOT = next(folder for folder in [Path.cwd(), *Path.cwd().parents] if (folder / "lib" / "runner.py").is_file())
sys.path.insert(0, str(ROOT))

import lib  # Before TensorFlow: turns on oneDNN kernels.
lib.load_tensorflow()  # Starts TensorFlow without its native start-up log lines.
import lib.weights
from lib import data, features, handoff, models, plots, reporting, training
''')

COMMON_PARAMETERS = '''
data_dir: str = ""  # Dataset root holding train/ and validation/ (cats/, dogs/ inside); "" downloads the public set; "synthetic" makes a tiny test set. DATA_DIR overrides.
weights: str = "imagenet"  # "imagenet", a path to vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5, or "none" (random: smoke tests only). VGG16_WEIGHTS overrides.
image_size: int = 150  # Side of the square input images in pixels (VGG16 needs at least 32).
preprocessing: str = "vgg16"  # "vgg16": ImageNet mean subtraction, what the weights were trained with; "rescale": pixels / 255, as the course notes.
max_images_per_class: int = 0  # Use at most this many images per class in each split; 0 uses them all.
seed: int = 42  # Seeds Python, NumPy and TensorFlow.
require_gpu: bool = False  # Stop at once unless TensorFlow sees a GPU (the full profile sets it).
mixed_precision: bool = False  # Compute in 16 bits with float32 weights: float16 on a GPU, bfloat16 on a CPU that has it natively; else float32.
deterministic: bool = False  # Also turn on TensorFlow op determinism (slower; for bit-exact reruns on a GPU).
verbose: int = 2  # Keras output: 2 is one line per epoch (log-friendly), 1 a progress bar, 0 nothing.
run_name: str = "interactive"  # Run folder under outputs/ (the runner sets it).
output_dir: str = ""  # Folder this stage writes to; "" means outputs/<run_name>/<notebook name> (the runner sets it).
profile_name: str = "notebook defaults"  # Which profile the values came from (the runner sets it).
'''

# ---------------------------------------------------------------------------------------------------
STAGE1 = [
    markdown('''
# Stage 1: feature extraction with a frozen VGG16 conv base

A convolutional network trained on ImageNet has learned features (edges, textures, object parts) that are
useful far beyond ImageNet. The cheapest way to reuse them: run the **VGG16 convolutional base** once over
every photo, keep its 4x4x512 output, and train only a small densely connected classifier on those
features. Training then takes seconds, because the expensive network never runs again.

This notebook follows the classic course notes (RMSprop 2e-5, 30 epochs, batch 20; they reached about 90%
validation accuracy) with two corrections a careful engineer makes: images are preprocessed the way the
ImageNet weights expect (`preprocessing="vgg16"`), and the epoch with the best validation accuracy is kept.
'''),
    COLAB,
    markdown("## Parameters\nDefaults reproduce the reference run; `make run-feature-extraction PROFILE=...` overrides them."),
    code(COMMON_PARAMETERS + '''epochs: int = 30  # Passes over the training features.
batch_size: int = 20  # Feature vectors per training step.
learning_rate: float = 2e-5  # RMSprop learning rate for the classifier.
dropout: float = 0.5  # Dropout rate between the two dense layers.
''', tags=["parameters"]),
    IMPORTS,
    markdown("## Data\nEvery photo is decoded and resized once (and cached on disk), with cats as class 0 and dogs as class 1."),
    code('''
training.seed_everything(seed, deterministic)
precision = training.configure_precision(mixed_precision, training.check_gpu(require_gpu))
started = reporting.now()
STAGE = "01_feature_extraction"
output_folder = reporting.stage_output_dir(output_dir, run_name, STAGE)
dataset_root = data.resolve_data_dir(data_dir)
image_sets = data.load_dataset(dataset_root, image_size, max_images_per_class)
print(f"Dataset: {dataset_root}")
{split: f"{len(image_set)} images ({int(image_set.labels.sum())} dogs)" for split, image_set in image_sets.items()}
'''),
    markdown("## The conv base\nVGG16 without its classifier (`include_top=False`): 150x150x3 photos in, 4x4x512 feature maps out. It stays frozen."),
    code('''
weights_choice = lib.weights.resolve_weights(weights)
display(reporting.weights_notice(weights_choice))
conv_base = models.build_conv_base(weights_choice, image_size)
classifier = models.build_classifier(conv_base.output_shape[1:], dropout)
split_model = models.split_base(conv_base, classifier, preprocessing)
print(f"Conv base output: {conv_base.output_shape[1:]}, {conv_base.count_params():,} parameters, all frozen.")
'''),
    markdown("## Extract the features once\nEach split goes through the conv base a single time. The result is cached on disk, keyed by the images, the weights, the image size and the preprocessing, so a rerun with other classifier settings extracts nothing."),
    code('''
extracted = features.cached_splits(split_model, image_sets, list(image_sets), weights_choice, image_size, preprocessing)
feature_arrays, extraction_seconds = extracted.arrays, extracted.seconds
{split: array.shape for split, array in feature_arrays.items()}
'''),
    markdown("## Train the classifier on the features\nFlatten, Dense(256, relu), Dropout, Dense(1, sigmoid). The weights of the epoch with the highest validation accuracy (ties: lowest validation loss) are restored at the end."),
    code('''
models.compile_binary(classifier, learning_rate)
best_epoch = training.BestEpoch()
fit_started = time.perf_counter()
history = classifier.fit(
    data.make_tf_dataset(feature_arrays["train"], image_sets["train"].labels, batch_size, shuffle=True, seed=seed),
    validation_data=data.make_tf_dataset(feature_arrays["validation"], image_sets["validation"].labels, batch_size),
    epochs=epochs, callbacks=[best_epoch], verbose=verbose, shuffle=False,  # The dataset reshuffles itself each epoch.
)
training_seconds = time.perf_counter() - fit_started
history_rows = training.history_rows(history.history)
training.write_history_csv(output_folder / "history.csv", history_rows)
models.save_model(classifier, output_folder / "classifier.keras")
'''),
    markdown("## Learning curves\nTraining accuracy climbs well above validation accuracy: with only 2000 training images the classifier overfits, which dropout slows but cannot stop."),
    code('''
figure = plots.learning_curves(history_rows, title="Stage 1: classifier on frozen VGG16 features")
plots.save(figure, output_folder / "learning_curves.png")
'''),
    markdown("## Where it goes wrong\nThe confusion matrix of the validation set, and the validation photos the classifier was most confident about and still got wrong."),
    code('''
validation = training.evaluate(classifier, feature_arrays["validation"], image_sets["validation"].labels)
test = training.evaluate(classifier, feature_arrays["test"], image_sets["test"].labels) if "test" in feature_arrays else None
figures = plots.evaluation_figures(output_folder, image_sets["validation"], validation["probabilities"])
'''),
    markdown("## Result"),
    code('''
metrics = reporting.build_metrics(
    STAGE, run_name=run_name, profile_name=profile_name, weights=weights_choice, preprocessing=preprocessing,
    image_size=image_size, validation=validation, test=test, best_epoch=best_epoch.best_epoch,
    epochs_run=len(history_rows), extraction_seconds=extraction_seconds, training_seconds=training_seconds,
    image_sets=image_sets, started=started, parameters=reporting.parameter_values(STAGE, globals()), precision=precision,
    features_from_cache=extracted.from_cache,
)
reporting.write_metrics(output_folder, metrics)
print(reporting.summary_sentence(metrics))
print(f"Extraction {extraction_seconds:.0f} s, training {training_seconds:.0f} s. Outputs: {output_folder}")
'''),
    markdown('''
## Conclusion
Frozen ImageNet features plus a small classifier already separate cats from dogs well. Preprocessing matters:
VGG16's weights expect BGR images with the ImageNet channel means subtracted; dividing pixels by 255, as the
course notes did, feeds the network inputs it never saw in training and costs several points of accuracy.
The next stage trains on randomly augmented photos to fight the overfitting seen in the curves above.
'''),
]

AUGMENTATION_PARAMETERS = """rotation_degrees: float = 40.0  # Random rotation by up to this many degrees either way.
width_shift: float = 0.1  # Random horizontal shift, as a fraction of the width.
height_shift: float = 0.1  # Random vertical shift, as a fraction of the height.
zoom: float = 0.2  # Random zoom of each axis by a factor from 1 - zoom to 1 + zoom.
horizontal_flip: bool = True  # Randomly mirror images left to right.
vertical_flip: bool = True  # Randomly flip images upside down (as the course notes do).
"""

DATA_CELL = code("""
training.seed_everything(seed, deterministic)
precision = training.configure_precision(mixed_precision, training.check_gpu(require_gpu))
started = reporting.now()
output_folder = reporting.stage_output_dir(output_dir, run_name, STAGE)
dataset_root = data.resolve_data_dir(data_dir)
image_sets = data.load_dataset(dataset_root, image_size, max_images_per_class)
evaluation_splits = [split for split in image_sets if split != "train"]
print(f"Dataset: {dataset_root}")
{split: f"{len(image_set)} images ({int(image_set.labels.sum())} dogs)" for split, image_set in image_sets.items()}
""")

STAGE2 = [
    markdown("""
# Stage 2: data augmentation, the frozen conv base trained end to end

Stage 1's classifier saw each training photo exactly once, as a fixed feature vector, and overfitted. Data
augmentation shows the model a new random variant of every photo each epoch: rotated, shifted, zoomed,
flipped. That means the photos must go through the conv base every time, so here the **frozen** VGG16 base
sits inside one model with the classifier and the whole model is trained end to end (only the classifier's
weights change).

Compared with the course notes (`ImageDataGenerator`, about 88% validation accuracy) this notebook:
augments inside the TensorFlow graph with Keras preprocessing layers; preprocesses as the ImageNet weights
expect; and validates on features computed once, since unaugmented validation photos through a frozen base
give the same features every epoch. Optionally it starts from stage 1's trained classifier.
"""),
    COLAB,
    markdown("## Parameters\nDefaults reproduce the reference run (50 epochs of 100 batches of 20 photos)."),
    code(COMMON_PARAMETERS + """epochs: int = 50  # Passes of steps_per_epoch batches of augmented photos.
steps_per_epoch: int = 100  # Batches per epoch (100 x 20 = the 2000 training photos); 0 means one pass over the training set.
batch_size: int = 20  # Augmented photos per training step.
learning_rate: float = 2e-5  # RMSprop learning rate.
dropout: float = 0.6  # Dropout rate between the two dense layers.
start_from: str = "scratch"  # "scratch": a new classifier (the reference); "previous": stage 1's trained classifier from this run; "auto": stage 1's when this run has it.
""" + AUGMENTATION_PARAMETERS, tags=["parameters"]),
    IMPORTS,
    markdown("## Data\nPhotos are decoded once and kept in memory; augmentation happens later, inside the model, on training photos only."),
    code('STAGE = "02_data_augmentation"'),
    DATA_CELL,
    markdown("## What augmentation does\nEach row: a training photo and five random variants of it. The model almost never sees the same picture twice."),
    code("""
augmentation = models.build_augmentation(rotation_degrees, width_shift, height_shift, zoom, horizontal_flip, vertical_flip, seed=seed)
figure = plots.augmented_examples(image_sets["train"].images[[0, 1, -1, -2]], augmentation, seed=seed)  # Two cats, two dogs.
plots.save(figure, output_folder / "augmented_examples.png")
"""),
    markdown("## The model: frozen conv base plus classifier\nFreezing matters: without it, the large gradients from the new, randomly initialised classifier would wreck the pretrained features. The counts below show that only the classifier is trainable."),
    code("""
weights_choice = lib.weights.resolve_weights(weights)
display(reporting.weights_notice(weights_choice))
conv_base = models.build_conv_base(weights_choice, image_size)
classifier = models.build_classifier(conv_base.output_shape[1:], dropout)
model = models.build_end_to_end(conv_base, classifier, preprocessing, augmentation)
conv_base.trainable = True
unfrozen_counts = models.count_parameters(model)
conv_base.trainable = False
frozen_counts = models.count_parameters(model)
print(f"Trainable parameters with the conv base unfrozen: {unfrozen_counts['trainable']:,}")
print(f"Trainable parameters with the conv base frozen:   {frozen_counts['trainable']:,} (the classifier only)")
"""),
    markdown("## Start from stage 1's classifier?\nWith `start_from=auto` or `previous`, the classifier starts from the one stage 1 trained in this run (same layer shapes), so augmentation refines an already good classifier instead of starting from random weights."),
    code("""
start = handoff.find_previous(output_folder, "01_feature_extraction", start_from, weights_choice, image_size, preprocessing, precision)
handoff.warm_start_classifier(classifier, start)
print(f"Classifier starts {start.description}.")
"""),
    markdown("## Validation features, computed once\nThe conv base is frozen and validation photos are not augmented, so their conv features are the same every epoch. They are computed once (or taken from stage 1's cache) and each epoch only the classifier runs on them. The numbers are the same as a full-model evaluation."),
    code("""
split_model = models.split_base(conv_base, classifier, preprocessing)
extracted = features.cached_splits(split_model, image_sets, evaluation_splits, weights_choice, image_size, preprocessing)
feature_arrays, extraction_seconds = extracted.arrays, extracted.seconds
{split: array.shape for split, array in feature_arrays.items()}
"""),
    markdown("## Train on augmented photos\nThe weights of the epoch with the highest validation accuracy (ties: lowest validation loss) are restored at the end."),
    code("""
models.compile_binary(model, learning_rate)
train_dataset = data.make_tf_dataset(image_sets["train"].images, image_sets["train"].labels, batch_size, shuffle=True, seed=seed)
fitted = training.fit_with_cached_validation(model, train_dataset, steps_per_epoch, epochs, split_model.top, feature_arrays["validation"], image_sets["validation"].labels, verbose)
history_rows, training_seconds = fitted.rows, fitted.seconds
training.write_history_csv(output_folder / "history.csv", history_rows)
models.save_model(model, output_folder / "model.keras")
"""),
    markdown("## Learning curves\nWith augmentation, training accuracy no longer runs away from validation accuracy: the model overfits far less."),
    code("""
figure = plots.learning_curves(history_rows, title="Stage 2: frozen VGG16 + classifier on augmented photos")
plots.save(figure, output_folder / "learning_curves.png")
"""),
    markdown("## Where it goes wrong"),
    code("""
evaluations = {split: training.evaluate(split_model.top, feature_arrays[split], image_sets[split].labels) for split in evaluation_splits}
validation, test = evaluations["validation"], evaluations.get("test")
figures = plots.evaluation_figures(output_folder, image_sets["validation"], validation["probabilities"])
"""),
    markdown("## Result"),
    code("""
metrics = reporting.build_metrics(
    STAGE, run_name=run_name, profile_name=profile_name, weights=weights_choice, preprocessing=preprocessing,
    image_size=image_size, validation=validation, test=test, best_epoch=fitted.best_epoch,
    epochs_run=len(history_rows), extraction_seconds=extraction_seconds, training_seconds=training_seconds,
    image_sets=image_sets, started=started, parameters=reporting.parameter_values(STAGE, globals()), precision=precision,
    started_from=start.description, trainable_parameters=frozen_counts["trainable"], frozen_parameters=frozen_counts["frozen"],
    features_from_cache=extracted.from_cache,
)
reporting.write_metrics(output_folder, metrics)
print(reporting.summary_sentence(metrics))
print(f"Classifier started {start.description}. Training {training_seconds:.0f} s. Outputs: {output_folder}")
"""),
    markdown("""
## Conclusion
Augmentation lets the classifier learn from many more distinct images than the 2000 on disk, so it overfits
less. The conv base itself is still the ImageNet one; the next stage adapts its top block to cats and dogs.
"""),
]

STAGE3 = [
    markdown("""
# Stage 3: fine tuning the top of the conv base

The conv base's first blocks detect generic edges and textures; its last block encodes more abstract,
ImageNet-specific parts. Fine tuning unfreezes that last block (`block5_conv1..3`) and trains it together
with the classifier at a low learning rate, so the abstract features adapt to cats and dogs without being
destroyed. The course notes' five steps:

1. add a classifier on top of a trained conv base; 2. freeze the base; 3. train the classifier;
4. unfreeze the top block; 5. train block and classifier together (RMSprop 1e-5).

Steps 1-3 are stage 2's result when this run has it; opened on its own, this notebook does them itself first.
As in stage 2, validation photos are not augmented and blocks 1-4 stay frozen, so their block4 output is
computed once and each epoch only block 5 and the classifier run on it.
"""),
    COLAB,
    markdown("## Parameters\nDefaults follow the course notes."),
    code(COMMON_PARAMETERS + """start_from: str = "auto"  # "auto": stage 2's model from this run when it exists, else steps 1-3 here; "previous": require stage 2's model; "scratch": always do steps 1-3 here.
classifier_epochs: int = 30  # Steps 1-3 (classifier on the frozen base), when not starting from stage 2.
epochs: int = 100  # Fine-tuning epochs (steps 4-5).
steps_per_epoch: int = 100  # Batches per epoch (100 x 20 = the 2000 training photos); 0 means one pass over the training set.
batch_size: int = 20  # Augmented photos per training step.
learning_rate: float = 2e-5  # RMSprop learning rate of steps 1-3.
fine_tune_learning_rate: float = 1e-5  # RMSprop learning rate of steps 4-5, lower so the pretrained block is adjusted, not overwritten.
dropout: float = 0.5  # Dropout rate of the classifier when it is built here.
unfreeze_layers: list = ["block5_conv1", "block5_conv2", "block5_conv3"]  # Conv-base layers trained in steps 4-5.
""" + AUGMENTATION_PARAMETERS, tags=["parameters"]),
    IMPORTS,
    markdown("## Data"),
    code('STAGE = "03_fine_tuning"'),
    DATA_CELL,
    markdown("## Steps 1-2: a classifier on the frozen conv base\nTaken from stage 2 of this run when it completed with the same weights, image size and preprocessing; otherwise built here."),
    code("""
weights_choice = lib.weights.resolve_weights(weights)
display(reporting.weights_notice(weights_choice))
start = handoff.find_previous(output_folder, "02_data_augmentation", start_from, weights_choice, image_size, preprocessing, precision)
conv_base, classifier = handoff.conv_base_and_classifier(start, weights_choice, image_size, dropout)
augmentation = models.build_augmentation(rotation_degrees, width_shift, height_shift, zoom, horizontal_flip, vertical_flip, seed=seed)
model = models.build_end_to_end(conv_base, classifier, preprocessing, augmentation)
train_dataset = data.make_tf_dataset(image_sets["train"].images, image_sets["train"].labels, batch_size, shuffle=True, seed=seed)
print(f"Starting {start.description}.")
"""),
    markdown("## Step 3: train the classifier (only when not starting from stage 2)\nValidation runs on conv-base features computed once, as in stage 2."),
    code("""
phase_rows, extraction_seconds, training_seconds = [], 0.0, 0.0
if not start.from_previous:
    split_model = models.split_base(conv_base, classifier, preprocessing)
    frozen_features = features.cached_splits(split_model, image_sets, ["validation"], weights_choice, image_size, preprocessing)
    models.compile_binary(model, learning_rate)
    fitted = training.fit_with_cached_validation(model, train_dataset, steps_per_epoch, classifier_epochs, split_model.top, frozen_features.arrays["validation"], image_sets["validation"].labels, verbose, phase="classifier")
    phase_rows, extraction_seconds, training_seconds = fitted.rows, frozen_features.seconds, fitted.seconds
"""),
    markdown("## Step 4: unfreeze the top block, and compile again\nKeras collects the trainable weights when a model is compiled: changing `trainable` without compiling again would silently keep training the old set."),
    code("""
models.unfreeze(conv_base, unfreeze_layers)
models.compile_binary(model, fine_tune_learning_rate)
layer_table = models.trainable_table(model)
display(reporting.table_html(layer_table, title="Layers with weights: which ones train in steps 4-5"))
counts = models.count_parameters(model)
print(f"Trainable parameters: {counts['trainable']:,}; frozen: {counts['frozen']:,}")
"""),
    markdown("## Validation features at the cut, computed once\nEverything up to the last frozen layer is fixed, so validation (and test) photos go through it once; each epoch only the unfrozen layers and the classifier run."),
    code("""
split_model = models.split_base(conv_base, classifier, preprocessing)
extracted = features.cached_splits(split_model, image_sets, evaluation_splits, weights_choice, image_size, preprocessing)
feature_arrays, extraction_seconds = extracted.arrays, extraction_seconds + extracted.seconds
print(f"Cached at {split_model.cut_layer}: " + ", ".join(f"{split} {array.shape}" for split, array in feature_arrays.items()))
"""),
    markdown("## Step 5: train the top block and the classifier together"),
    code("""
fitted = training.fit_with_cached_validation(model, train_dataset, steps_per_epoch, epochs, split_model.top, feature_arrays["validation"], image_sets["validation"].labels, verbose,
                                             phase="fine_tuning", first_epoch=len(phase_rows) + 1)
fine_tune_rows, training_seconds = fitted.rows, training_seconds + fitted.seconds
history_rows = phase_rows + fine_tune_rows
training.write_history_csv(output_folder / "history.csv", history_rows)
models.save_model(model, output_folder / "model.keras")
"""),
    markdown("## Learning curves across both phases\nThe classifier phase (stage 2's epochs when this run started from stage 2, else steps 1-3 above), then fine tuning after the dashed line."),
    code("""
earlier_rows = training.read_history_csv(output_folder.parent / "02_data_augmentation" / "history.csv", phase="classifier (stage 2)") if start.from_previous else []
plot_rows = training.concatenate_histories(earlier_rows, phase_rows, fine_tune_rows)
figure = plots.learning_curves(plot_rows, title="Stage 3: classifier, then fine tuning of block 5", phase_boundaries=[len(earlier_rows) + len(phase_rows)] if earlier_rows or phase_rows else None)
plots.save(figure, output_folder / "learning_curves.png")
"""),
    markdown("## Where it goes wrong"),
    code("""
evaluations = {split: training.evaluate(split_model.top, feature_arrays[split], image_sets[split].labels) for split in evaluation_splits}
validation, test = evaluations["validation"], evaluations.get("test")
figures = plots.evaluation_figures(output_folder, image_sets["validation"], validation["probabilities"])
"""),
    markdown("## Compared with the earlier stages of this run"),
    code("""
comparison = reporting.stage_comparison(output_folder, {"03_fine_tuning": validation["accuracy"]})
display(reporting.table_html(comparison, title="Validation accuracy by stage (this run and the course notes)"))
"""),
    markdown("## Result"),
    code("""
metrics = reporting.build_metrics(
    STAGE, run_name=run_name, profile_name=profile_name, weights=weights_choice, preprocessing=preprocessing,
    image_size=image_size, validation=validation, test=test, best_epoch=len(phase_rows) + fitted.best_epoch,
    epochs_run=len(history_rows), extraction_seconds=extraction_seconds, training_seconds=training_seconds,
    image_sets=image_sets, started=started, parameters=reporting.parameter_values(STAGE, globals()), precision=precision,
    started_from=start.description, unfrozen_layers=unfreeze_layers, cached_at=split_model.cut_layer,
    fine_tuning_epochs=len(fine_tune_rows), classifier_phase_epochs=len(phase_rows),
    trainable_parameters=counts["trainable"], frozen_parameters=counts["frozen"],
    features_from_cache=extracted.from_cache,
    best_epoch_rule="highest val_accuracy during fine tuning, ties broken by lowest val_loss; counted across this notebook's phases",
)
reporting.write_metrics(output_folder, metrics)
print(reporting.summary_sentence(metrics))
print(f"Started {start.description}. Training {training_seconds:.0f} s. Outputs: {output_folder}")
"""),
    markdown("""
## Conclusion
Adapting the most abstract block of the conv base to the task adds the last points of accuracy. The low
learning rate and the classifier trained first are what make this safe: a random classifier's large
gradients would otherwise flow into block 5 and erase what ImageNet taught it.
"""),
]


def render(name: str, cells: list[dict]) -> str:
    """The notebook file's text: cells without outputs, stable ids."""
    notebook = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    for index, cell in enumerate(cells):
        cell["id"] = f"{name.split('_')[0]}-{index:02d}"
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def write(name: str, cells: list[dict]) -> None:
    (NOTEBOOKS / f"{name}.ipynb").write_text(render(name, cells), encoding="utf-8")


NOTEBOOK_CELLS = {"01_feature_extraction": STAGE1, "02_data_augmentation": STAGE2, "03_fine_tuning": STAGE3}


if __name__ == "__main__":
    import sys

    if "--check" in sys.argv:  # `make lint`: the committed notebooks are exactly what this script writes.
        stale = []
        for name, cells in NOTEBOOK_CELLS.items():
            expected = render(name, cells)
            if (NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8") != expected:
                stale.append(name)
        if stale:
            sys.exit(f"Notebooks differ from tools/build_notebooks.py: {', '.join(stale)} (run `make notebooks`).")
        print("Notebooks match tools/build_notebooks.py and carry no outputs.")
    else:
        for name, cells in NOTEBOOK_CELLS.items():
            write(name, cells)
