# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Stage 2: data augmentation, the frozen conv base trained end to end
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# In Colab, pick a GPU runtime first (Runtime > Change runtime type): the defaults below are the full reference
# schedule, meant for a GPU; on a CPU runtime the first code cell says what they would cost there and how to
# shorten them.
#
# Stage 1's classifier saw each training photo as one fixed feature vector, which invites overfitting. Data
# augmentation shows the model a new random variant of every photo each epoch: rotated, shifted, zoomed,
# flipped. That means the photos must go through the conv base every time, so here the **frozen** VGG16 base
# sits inside one model with the classifier and the whole model is trained end to end (only the classifier's
# weights change).
#
# Compared with the course notes (`ImageDataGenerator`, about 88% validation accuracy) this notebook augments
# inside the TensorFlow graph with Keras preprocessing layers, preprocesses as the ImageNet weights expect,
# and validates on features computed once, since unaugmented validation photos through a frozen base give
# the same features every epoch. Optionally it starts from stage 1's trained classifier.
#
# [colab]: https://colab.research.google.com/github/YOUR-GITHUB-ACCOUNT/vgg16-cats-vs-dogs/blob/main/notebooks/02_data_augmentation.ipynb

# %% [markdown]
# ## Parameters
# The defaults reproduce the reference run (50 epochs of 100 batches of 20 augmented photos).
# `make run-data-augmentation PROFILE=...` (or `SET='epochs=10'`) overrides them; `papermill --help-notebook`
# lists them with this help.

# %% tags=["parameters"]
epochs: int = 50  # Passes of steps_per_epoch batches of augmented photos.
steps_per_epoch: int = 100  # Batches per epoch (100 x 20: the 2000 training photos); 0: one pass over them.
batch_size: int = 20  # Augmented photos per training step.
learning_rate: float = 2e-5  # RMSprop learning rate.
dropout: float = 0.6  # Dropout rate between the two dense layers.
start_from: str = "scratch"  # "scratch": a new classifier; "auto": stage 1's from this run if any; "previous": must.
rotation_degrees: float = 40.0  # Random rotation by up to this many degrees either way.
width_shift: float = 0.1  # Random horizontal shift, as a fraction of the width.
height_shift: float = 0.1  # Random vertical shift, as a fraction of the height.
zoom: float = 0.2  # Random zoom of each axis by a factor from 1 - zoom to 1 + zoom.
horizontal_flip: bool = True  # Randomly mirror photos left to right.
vertical_flip: bool = True  # Randomly flip photos upside down (as the course notes do).
augmentation_pool: int = 0  # 0: fresh augmentation every epoch; K: K variants per photo computed once (fast).
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
# Photos are decoded once and kept in memory; augmentation happens later, inside the model, on training
# photos only.

# %%
stage = stage_run.start("02_data_augmentation", globals())
image_sets = photos.load_image_sets(photos.resolve_data_dir(data_dir), image_size, max_images_per_class, image_store,
                                    report_split)
evaluation_splits = [split for split in image_sets if split != "train"]
print("Photos: " + "; ".join(f"{split} {count}" for split, count in photos.describe(image_sets).items()) + ".")

# %% [markdown]
# ## The augmentation
# Keras preprocessing layers with this stage's settings (by default the course notes' `ImageDataGenerator` ones):
# random flips, a rotation by up to `rotation_degrees` either way (`RandomRotation` takes a fraction of a full
# turn), shifts by up to `width_shift` and `height_shift` of each side, and a zoom of each axis by a factor from
# 1 - `zoom` to 1 + `zoom`; gaps filled with the nearest pixel. They change photos only in training; a setting of
# 0 leaves photos as they are.

# %%
flip_mode = models.flip_mode(horizontal_flip, vertical_flip)  # "horizontal_and_vertical" by default; None: none.
augmentation = keras.Sequential(
    [
        keras.layers.RandomFlip(flip_mode, seed=seed) if flip_mode else keras.layers.Identity(),
        keras.layers.RandomRotation(rotation_degrees / 360, fill_mode="nearest", seed=seed),
        keras.layers.RandomTranslation(height_shift, width_shift, fill_mode="nearest", seed=seed),
        keras.layers.RandomZoom((-zoom, zoom), (-zoom, zoom), fill_mode="nearest", seed=seed),
    ],
    name="augmentation",
)

# %% [markdown]
# Each row: a training photo and five random variants of it. The model almost never sees the same picture
# twice.

# %%
examples = image_sets["train"].images[[0, 1, -1, -2]]  # Two cats, two dogs.
stage.save_figure(plots.augmented_examples(examples, augmentation, seed=seed), "augmented_examples.png")

# %% [markdown]
# ## The model: frozen conv base plus classifier
# The conv base is stage 1's, VGG16 without its classifier, and it is frozen: here the whole model trains, and
# without freezing the large gradients from the new, randomly initialised classifier would wreck the pretrained
# features. On top of it, stage 1's classifier layers (`Flatten`, `Dense(256, relu)`, `Dropout`, `Dense(1, sigmoid)`).

# %%
weights_choice = vgg16_weights.resolve_weights(weights)
display(stage_run.weights_notice(weights_choice))
conv_base = models.build_conv_base(weights_choice, image_size)
conv_base.trainable = False  # Freeze it (build_conv_base already does): only the classifier's weights train.
classifier = models.build_classifier(conv_base.output_shape[1:], dropout)

# %% [markdown]
# One model from raw pixels to P(dog), built with the functional API: augmentation, preprocessing, the conv base,
# the classifier. The counts below show that only the classifier is trainable.

# %%
inputs = keras.Input(shape=(image_size, image_size, 3), name="image")  # RGB pixels, 0 to 255.
x = augmentation(inputs)  # A new random variant of each photo in training; the photo itself otherwise.
x = models.Preprocess(preprocessing, name="preprocess")(x)  # As the ImageNet weights expect (see stage 1).
x = conv_base(x, training=False)  # Inference mode whatever is unfrozen later, as Keras recommends.
outputs = classifier(x)
model = keras.Model(inputs, outputs, name="vgg16_cats_vs_dogs")
counts = models.count_parameters(model)
print(f"Trainable parameters with the conv base frozen: {counts.trainable:,} (the classifier only); "
      f"frozen: {counts.frozen:,}.")

# %% [markdown]
# ## Start from stage 1's classifier?
# With `start_from=auto` or `previous`, the classifier starts from the one stage 1 trained in this run (same
# layer shapes), so augmentation refines an already good classifier instead of starting from random weights.

# %%
start = handoff.find_start(stage, start_from, weights_choice)
handoff.warm_start_classifier(classifier, start)
print(f"Classifier starts {start.description}.")

# %% [markdown]
# ## Validation features, computed once
# The conv base is frozen and validation photos are not augmented, so their conv features are the same every
# epoch. They are computed once (or taken from stage 1's cache) and each epoch only the classifier runs on
# them. The numbers are the same as a full-model evaluation.

# %%
cut = models.cut_base(conv_base, classifier, preprocessing)
extracted = features.at_cut(cut, image_sets, evaluation_splits, weights_choice)
shapes = ", ".join(f"{image_sets[split].name} {array.shape}" for split, array in extracted.arrays.items())
print(f"Conv-base features at {cut.cut_layer}: {shapes}.")

# %% [markdown]
# ## Train on augmented photos
# With `augmentation_pool=0` the whole `model` trains on photos augmented afresh every epoch, as in the course
# notes: every epoch pushes every photo through the frozen conv base again. With `augmentation_pool=K`, K
# augmented variants of each photo go through the frozen base once (cached like the features; the same four
# layers, seeded per variant, from the same settings), and each epoch draws one of them (or the photo itself) per
# photo and trains `cut.top`, the layers above the cut (here the classifier alone), on their features: the same
# weights, in seconds per epoch. Compiled as in stage 1.

# %%
augmentation_settings = dict(rotation_degrees=rotation_degrees, width_shift=width_shift, height_shift=height_shift,
                             zoom=zoom, horizontal_flip=horizontal_flip, vertical_flip=vertical_flip)
training_data = pool.training_data(cut, image_sets["train"], augmentation_pool=augmentation_pool,
                                   augmentation=augmentation_settings, batch_size=batch_size,
                                   steps_per_epoch=steps_per_epoch, seed=seed, weights=weights_choice)
trained_model = cut.top if augmentation_pool else model  # On a pool, only what lies above the cut runs.
trained_model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate),
                      loss="binary_crossentropy", metrics=["accuracy"])

# %% [markdown]
# Trained with the callbacks of stage 1: cached validation, the best epoch, TensorBoard, and the backup that lets
# an interrupted run resume.

# %%
callbacks = [training.CachedValidation(cut.top, extracted.arrays["validation"], image_sets["validation"].labels),
             training.BestEpoch(),
             keras.callbacks.TensorBoard(log_dir=stage.folder / "logs"),
             stage.backup_and_restore()]
fitted = training.fit(trained_model, training_data.stream, epochs=epochs,
                      steps_per_epoch=training_data.steps_per_epoch, callbacks=callbacks, verbose=verbose)
stage.save_history(fitted.rows)
stage.hand_off(model)

# %% [markdown]
# ## Learning curves
# Training and validation accuracy per epoch, to set beside stage 1's: augmentation is meant to keep training
# accuracy from running away from validation accuracy.

# %%
figure = plots.learning_curves(fitted.rows, title="Stage 2: frozen VGG16 + classifier on augmented photos")
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
# ## Result

# %%
metrics = stage.finish(weights=weights_choice, image_sets=image_sets, evaluations=evaluations, fitted=fitted,
                       extraction_seconds=extracted.seconds + training_data.seconds, started_from=start.description,
                       trainable_parameters=counts.trainable, frozen_parameters=counts.frozen,
                       features_from_cache=extracted.from_cache, **training_data.record())

# %% [markdown]
# ## Conclusion
# What this stage tried: augmentation shows the classifier many more distinct images than the 2000 on disk, to
# make it overfit less. The conv base itself is still the ImageNet one; the next stage adapts its top block to
# cats and dogs. What this run found is printed below from its own numbers: the accuracy with its 95% interval,
# and this stage against stage 1 photo by photo on the same photos (the photos it fixed and broke, the difference
# with its 95% interval, the exact McNemar test), and whether that is distinguishable from no change.

# %%
print(photo_results.conclusion(metrics))
