# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Stage 3: fine tuning the top of the conv base
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# In Colab, pick a GPU runtime first (Runtime > Change runtime type): the defaults below are the full reference
# schedule, meant for a GPU; on a CPU runtime the first code cell says what they would cost there and how to
# shorten them.
#
# The conv base's first blocks detect generic edges and textures; its last block encodes more abstract,
# ImageNet-specific parts. Fine tuning unfreezes that last block (`block5_conv1..3`) and trains it together
# with the classifier at a low learning rate, so the abstract features adapt to cats and dogs without being
# destroyed. The course notes' five steps:
#
# 1. add a classifier on top of a trained conv base;
# 2. freeze the base;
# 3. train the classifier;
# 4. unfreeze the top block;
# 5. train block and classifier together (RMSprop 1e-5).
#
# Steps 1-3 are stage 2's result when this run has it; opened on its own, this notebook does them itself
# first. As in stage 2, validation photos are not augmented and blocks 1-4 stay frozen, so their block4
# output is computed once and each epoch only block 5 and the classifier run on it.
#
# [colab]: https://colab.research.google.com/github/YOUR-GITHUB-ACCOUNT/vgg16-cats-vs-dogs/blob/main/notebooks/03_fine_tuning.ipynb

# %% [markdown]
# ## Parameters
# The defaults follow the course notes. `make run-fine-tuning PROFILE=...` (or `SET='epochs=10'`) overrides
# them; `papermill --help-notebook` lists them with this help.

# %% tags=["parameters"]
start_from: str = "auto"  # "auto": stage 2's model from this run if any, else steps 1-3 here; "previous": must.
classifier_epochs: int = 30  # Steps 1-3 (the classifier on the frozen base) when not starting from stage 2.
epochs: int = 100  # Fine-tuning epochs (steps 4-5).
steps_per_epoch: int = 100  # Batches per epoch (100 x 20: the 2000 training photos); 0: one pass over them.
batch_size: int = 20  # Augmented photos per training step.
learning_rate: float = 2e-5  # RMSprop learning rate of steps 1-3.
fine_tune_learning_rate: float = 1e-5  # RMSprop learning rate of steps 4-5: adjusts block 5, not overwrites it.
dropout: float = 0.5  # Dropout rate of the classifier when it is built here.
unfreeze_layers: list = ["block5_conv1", "block5_conv2", "block5_conv3"]  # Conv-base layers trained in steps 4-5.
rotation_degrees: float = 40.0  # Random rotation by up to this many degrees either way.
width_shift: float = 0.1  # Random horizontal shift, as a fraction of the width.
height_shift: float = 0.1  # Random vertical shift, as a fraction of the height.
zoom: float = 0.2  # Random zoom of each axis by a factor from 1 - zoom to 1 + zoom.
horizontal_flip: bool = True  # Randomly mirror photos left to right.
vertical_flip: bool = True  # Randomly flip photos upside down (as the course notes do).
augmentation_pool: int = 0  # 0: fresh augmentation every epoch; K: K variants per photo computed once (fast).
feature_flips: bool = False  # With a pool: also mirror pooled block-4 feature maps at random (free regularizer).
# Common to every stage:
data_dir: str = ""  # Photos: train/ and validation/ (cats/, dogs/ inside); "" downloads them. DATA_DIR overrides.
weights: str = "imagenet"  # "imagenet", a path to the VGG16 notop .h5 file, or "none". VGG16_WEIGHTS overrides.
image_size: int = 150  # Side of the square input images in pixels (VGG16 needs at least 32).
preprocessing: str = "vgg16"  # "vgg16": ImageNet mean subtraction, as the weights expect; "rescale": pixels / 255.
max_images_per_class: int = 0  # Use at most this many photos per class in each split; 0 uses them all.
image_store: str = "auto"  # Decoded photos: "memory", "disk" (read as needed: large sets), "auto" (by free memory).
report_split: str = "auto"  # Scored, chose nothing: "test" (test/), "held_out" (half of validation/), "auto", "none".
seed: int = 42  # Seeds Python, NumPy and TensorFlow.
mixed_precision: bool = False  # 16-bit compute where native (GPU float16, CPU bfloat16); float32 elsewhere.
require_gpu: bool = False  # Stop at once unless TensorFlow sees a GPU.
deterministic: bool = False  # Also turn on TensorFlow op determinism (slower; for bit-exact GPU reruns).
distribution: str = "none"  # "none", "mirrored" (local GPUs or logical CPUs), "multi_worker" (TF_CONFIG), "auto".
replicas: int = 0  # With "mirrored": logical CPU devices (0: 2) on a CPU, at most this many GPUs (0: all).
test_time_augmentation: bool = False  # Also score each held-out photo with its mirror image (one more pass).
calibrate: bool = True  # Fit a temperature on the validation photos so that P(dog) means what it says.
verbose: int = 2  # Keras output: 2 is one line per epoch, 1 a progress bar, 0 nothing.
drive_folder: str = ""  # In Colab: run folders on Google Drive here (e.g. "MyDrive/vgg16-runs"); "" keeps them local.
# Set by the runner:
run_name: str = "interactive"  # Run folder under outputs/.
output_dir: str = ""  # This stage's folder; "" means outputs/<run_name>/<notebook name>.
profile_name: str = "notebook defaults"  # Where the parameter values came from.

# %% [markdown]
# ## Setup
# In Google Colab the first cell fetches the project, whose `lib/` holds the code these notebooks call, and runs
# on Colab's own TensorFlow and Keras; with `drive_folder` the results go to Google Drive and outlive the runtime.
# Elsewhere it does nothing. The next ones start TensorFlow and Keras and import the suite's modules this stage uses.

# %%
import os
import subprocess
import sys

REPOSITORY = ""  # Set in lib/run/colab.py.
if "google.colab" in sys.modules and not os.path.isfile("vgg16-suite.marker"):  # In Colab, outside the project.
    repository = os.environ.get("SUITE_REPOSITORY", REPOSITORY)
    folder = os.path.join(os.environ.get("COLAB_WORKDIR", "/content"), "vgg16-cats-vs-dogs")
    if not (repository or os.path.isdir(folder)):
        raise SystemExit("Set SUITE_REPOSITORY to the project's git URL in a cell above and run this one again.")
    if not os.path.isdir(folder):
        subprocess.run(["git", "clone", "--quiet", "--depth=1", repository, folder], check=True)
    sys.path.insert(0, folder)
    from lib.run import colab
    colab.prepare(data_dir, drive_folder)  # Into the clone's notebooks/; installs what is missing; Drive if asked.

# %%
from pathlib import Path

from IPython.display import display

sys.path.insert(0, str(Path.cwd().parent))  # The project root: notebooks run from notebooks/.
import lib  # Before TensorFlow: turns on its oneDNN kernels.

lib.load_tensorflow()  # Started without TensorFlow's native log noise (Keras would start it noisily).
import keras

# %%
from lib.core import photo_results
from lib.study import evaluation, features, handoff, heatmaps, models, photos, plots, pool, stage_run, training
from lib.study import weights as vgg16_weights

# %% [markdown]
# ## Start the stage, load the photos

# %%
stage = stage_run.start("03_fine_tuning", globals())
image_sets = photos.load_image_sets(photos.resolve_data_dir(data_dir), image_size, max_images_per_class, image_store,
                                    report_split)
evaluation_splits = [split for split in image_sets if split != "train"]
print("Photos: " + "; ".join(f"{split} {count}" for split, count in photos.describe(image_sets).items()) + ".")

# %% [markdown]
# ## Steps 1-2: a classifier on the frozen conv base
# Taken from stage 2 of this run when it completed with the same weights, image size, preprocessing and
# precision; otherwise built here.

# %%
weights_choice = vgg16_weights.resolve_weights(weights)
display(stage_run.weights_notice(weights_choice))
start = handoff.find_start(stage, start_from, weights_choice)
conv_base, classifier = handoff.conv_base_and_classifier(start, weights_choice, image_size, dropout)
augmentation_settings = dict(rotation_degrees=rotation_degrees, width_shift=width_shift, height_shift=height_shift,
                             zoom=zoom, horizontal_flip=horizontal_flip, vertical_flip=vertical_flip)
model = models.build_end_to_end(conv_base, classifier, preprocessing,
                                models.build_augmentation(**augmentation_settings, seed=seed))
print(f"Starting {start.description}.")

# %% [markdown]
# ## Step 3: train the classifier (only when not starting from stage 2)
# As in stage 2: validation on conv-base features computed once, training on photos augmented every epoch or
# on the augmentation pool.

# %%
classifier_phase, extraction_seconds = training.FitResult(rows=[], best_epoch=None, seconds=0.0), 0.0
if not start.from_hand_off:
    cut = models.cut_base(conv_base, classifier, preprocessing)
    at_base = features.at_cut(cut, image_sets, ["validation"], weights_choice)
    classifier_data = pool.training_data(cut, image_sets["train"], augmentation_pool=augmentation_pool,
                                         augmentation=augmentation_settings, batch_size=batch_size,
                                         steps_per_epoch=steps_per_epoch, seed=seed, weights=weights_choice)
    classifier_model = cut.top if augmentation_pool else model  # On a pool, only what lies above the cut runs.
    classifier_model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate),
                             loss="binary_crossentropy", metrics=["accuracy"])
    extraction_seconds = at_base.seconds + classifier_data.seconds

# %% [markdown]
# Trained with the callbacks of stage 1: cached validation, the best epoch, TensorBoard, and the backup that lets
# an interrupted run resume.

# %%
if not start.from_hand_off:
    callbacks = [training.CachedValidation(cut.top, at_base.arrays["validation"], image_sets["validation"].labels),
                 training.BestEpoch(),
                 keras.callbacks.TensorBoard(log_dir=stage.folder / "logs" / "classifier"),
                 stage.backup_and_restore("classifier")]
    classifier_phase = training.fit(classifier_model, classifier_data.stream, epochs=classifier_epochs,
                                    steps_per_epoch=classifier_data.steps_per_epoch, callbacks=callbacks,
                                    verbose=verbose, phase="classifier")

# %% [markdown]
# ## Step 4: unfreeze the top block
# The conv base becomes trainable as a whole, then every layer but the ones named in `unfreeze_layers`
# (`block5_conv1..3`) is frozen again.

# %%
models.check_layer_names(conv_base, unfreeze_layers)  # A clear error for a layer VGG16 does not have.
conv_base.trainable = True
for layer in conv_base.layers:
    layer.trainable = layer.name in unfreeze_layers
display(stage_run.table(models.trainable_table(model), title="Layers with weights: which train in steps 4-5"))

# %% [markdown]
# ## ... and compile again
# Keras collects the trainable weights when a model is compiled: changing `trainable` without compiling again
# would silently keep training the old set. Everything below the first unfrozen layer stays frozen: with
# `augmentation_pool=K` the pool of augmented photos is taken at that cut (block 4's output, shared with
# stage 2), and only block 5 and the classifier train on it. `feature_flips` also mirrors half of the pooled
# feature maps left to right, at random: not the features of mirrored photos, but a free augmentation that
# keeps block 5 from memorizing the few stored variants.

# %%
cut = models.cut_base(conv_base, classifier, preprocessing)
training_data = pool.training_data(cut, image_sets["train"], augmentation_pool=augmentation_pool,
                                   augmentation=augmentation_settings, batch_size=batch_size,
                                   steps_per_epoch=steps_per_epoch, seed=seed, weights=weights_choice,
                                   feature_flips=feature_flips)
trained_model = cut.top if augmentation_pool else model  # On a pool: block 5 and the classifier, on pooled maps.
trained_model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=fine_tune_learning_rate),
                      loss="binary_crossentropy", metrics=["accuracy"])
counts = models.count_parameters(model)
print(f"Trainable parameters: {counts.trainable:,}; frozen: {counts.frozen:,}")

# %% [markdown]
# ## Validation features at the cut, computed once
# Everything up to the last frozen layer is fixed, so validation (and held-out) photos go through it once; each
# epoch only the unfrozen layers and the classifier run.

# %%
extracted = features.at_cut(cut, image_sets, evaluation_splits, weights_choice)
print(f"Cached at {cut.cut_layer}: "
      + ", ".join(f"{image_sets[split].name} {array.shape}" for split, array in extracted.arrays.items()))

# %% [markdown]
# ## Step 5: train the top block and the classifier together
# With the same callbacks as stage 1's; the best epoch is chosen among the fine-tuning epochs, and each phase has
# its own TensorBoard logs and its own backup.

# %%
callbacks = [training.CachedValidation(cut.top, extracted.arrays["validation"], image_sets["validation"].labels),
             training.BestEpoch(),
             keras.callbacks.TensorBoard(log_dir=stage.folder / "logs" / "fine_tuning"),
             stage.backup_and_restore("fine_tuning")]
fine_tuning = training.fit(trained_model, training_data.stream, epochs=epochs,
                           steps_per_epoch=training_data.steps_per_epoch, callbacks=callbacks, verbose=verbose,
                           phase="fine_tuning", first_epoch=len(classifier_phase.rows) + 1)
fitted = classifier_phase.then(fine_tuning)
stage.save_history(fitted.rows)
stage.hand_off(model)

# %% [markdown]
# ## Learning curves across both phases
# The classifier phase (stage 2's epochs when this run started from stage 2, else steps 1-3 above), then fine
# tuning after the dashed line.

# %%
earlier_rows = handoff.previous_history(stage) if start.from_hand_off else []
plot_rows = training.concatenate_histories(earlier_rows, fitted.rows)
boundary = len(earlier_rows) + len(classifier_phase.rows)
figure = plots.learning_curves(plot_rows, title="Stage 3: classifier, then fine tuning of block 5",
                               phase_boundaries=[boundary] if boundary else None)
stage.save_figure(figure, "learning_curves.png")

# %% [markdown]
# ## Where it goes wrong
# The confusion matrix, the reliability diagram with its expected calibration error, and the validation photos
# the model was most confident about and still got wrong.

# %%
evaluations = evaluation.evaluate(cut, extracted.arrays, image_sets, evaluation_splits, weights_choice,
                                  test_time_augmentation, calibrate)
figures = plots.evaluation_figures(stage.folder, image_sets["validation"], evaluations["validation"])

# %% [markdown]
# ## What the model looks at
# Class activation heatmaps (Grad-CAM) from the last conv layer: for the validation photos the model was surest
# about, right (top row) and wrong (bottom row), the regions whose features pushed it to its answer. A model
# that learned cats and dogs lights up the animal, not the background.

# %%
figure = heatmaps.confident_photos(conv_base, classifier, preprocessing, image_sets["validation"],
                                   evaluations["validation"].probabilities)
stage.save_figure(figure, "heatmaps.png")

# %% [markdown]
# ## Compared with the earlier stages of this run

# %%
comparison = stage_run.stage_comparison(stage, evaluations["validation"].accuracy, evaluations["validation"].right)
display(stage_run.table(comparison, title="Validation accuracy by stage (this run and the course notes)"))

# %% [markdown]
# ## Result

# %%
metrics = stage.finish(
    weights=weights_choice, image_sets=image_sets, evaluations=evaluations, fitted=fitted,
    extraction_seconds=extraction_seconds + extracted.seconds + training_data.seconds, started_from=start.description,
    unfrozen_layers=unfreeze_layers, cached_at=cut.cut_layer, fine_tuning_epochs=len(fine_tuning.rows),
    classifier_phase_epochs=len(classifier_phase.rows), trainable_parameters=counts.trainable,
    frozen_parameters=counts.frozen, features_from_cache=extracted.from_cache, **training_data.record(),
    best_epoch_rule="highest val_accuracy during fine tuning, ties broken by lowest val_loss; counted across "
                    "this notebook's phases",
)

# %% [markdown]
# ## Conclusion
# What this stage tried: adapting the most abstract block of the conv base to the task. The low learning rate
# and the classifier trained first are there to make this safe: a random classifier's large gradients would
# otherwise flow into block 5 and erase what ImageNet taught it. Whether fine tuning changed anything is measured,
# not assumed: below, from this run's own numbers, what it changed against stage 2 on the same photos (fixed,
# broke, the difference with its 95% interval, the exact McNemar test) and whether that is distinguishable from
# no change on these photos. Held-out (or test) photos chose nothing; validation photos chose each stage's best epoch.

# %%
print(photo_results.conclusion(metrics))
