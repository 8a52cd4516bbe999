# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Stage 1: feature extraction with a frozen VGG16 conv base
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# In Colab, pick a GPU runtime first (Runtime > Change runtime type): the defaults below are the full reference
# schedule, meant for a GPU; on a CPU runtime the first code cell says what they would cost there and how to
# shorten them.
#
# A convolutional network trained on ImageNet has learned features (edges, textures, object parts) that are
# useful far beyond ImageNet. The cheapest way to reuse them: run the **VGG16 convolutional base** once over
# every photo, keep its 4x4x512 output, and train only a small densely connected classifier on those
# features. Training then takes seconds, because the expensive network never runs again.
#
# This notebook follows the classic course notes (RMSprop 2e-5, 30 epochs, batch 20; they reached about 90%
# validation accuracy) with two corrections a careful engineer makes: images are preprocessed the way the
# ImageNet weights expect (`preprocessing="vgg16"`), and the epoch with the best validation accuracy is kept.
#
# [colab]: https://colab.research.google.com/github/YOUR-GITHUB-ACCOUNT/vgg16-cats-vs-dogs/blob/main/notebooks/01_feature_extraction.ipynb

# %% [markdown]
# ## Parameters
# The defaults reproduce the reference run. `make run-feature-extraction PROFILE=...` (or `SET='epochs=10'`)
# overrides them; `papermill --help-notebook` lists them with this help.

# %% tags=["parameters"]
epochs: int = 30  # Passes over the training features.
batch_size: int = 20  # Feature vectors per training step.
learning_rate: float = 2e-5  # RMSprop learning rate for the classifier.
dropout: float = 0.5  # Dropout rate between the two dense layers.
feature_flips: bool = False  # Also train on each photo's block-4 maps mirrored (block 5 once more).
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
from lib.study import batches, evaluation, features, heatmaps, models, photos, plots, stage_run, training
from lib.study import weights as vgg16_weights

# %% [markdown]
# ## Start the stage, load the photos
# `stage_run.start` checks the devices, seeds Python, NumPy and TensorFlow, sets the compute precision and makes
# this stage's output folder. Every photo is decoded and resized once (and cached on disk), with cats as class 0
# and dogs as class 1. The validation photos choose the best epoch; the photos the stage reports on without having
# chosen anything on them are the `test/` folder when there is one, else half of the validation photos held back
# from every choice (`report_split`; the same half on every machine and seed).

# %%
stage = stage_run.start("01_feature_extraction", globals())
image_sets = photos.load_image_sets(photos.resolve_data_dir(data_dir), image_size, max_images_per_class, image_store,
                                    report_split)
print("Photos: " + "; ".join(f"{split} {count}" for split, count in photos.describe(image_sets).items()) + ".")

# %% [markdown]
# ## The conv base
# VGG16 without its classifier (`keras.applications.VGG16(include_top=False)`): 150x150x3 photos in, 4x4x512
# feature maps out. It stays frozen.

# %%
weights_choice = vgg16_weights.resolve_weights(weights)
display(stage_run.weights_notice(weights_choice))
conv_base = models.build_conv_base(weights_choice, image_size)
print(f"Conv base output: {conv_base.output_shape[1:]}, {conv_base.count_params():,} parameters, all frozen.")

# %% [markdown]
# ## The classifier
# A small densely connected classifier on the conv base's features: flatten the 4x4x512 maps, one hidden layer
# of 256 units, dropout against overfitting, and one sigmoid unit that gives P(dog).

# %%
classifier = keras.Sequential(
    [
        keras.Input(shape=conv_base.output_shape[1:]),
        keras.layers.Flatten(),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(1, activation="sigmoid", dtype="float32"),  # float32 even under 16-bit compute.
    ],
    name="classifier",
)
classifier.summary()

# %% [markdown]
# ## Extract the features once
# Each split goes through the conv base a single time. The result is cached on disk, keyed by the photos,
# the weights, the image size and the preprocessing, so a rerun with other classifier settings extracts
# nothing.

# %%
cut = models.cut_base(conv_base, classifier, preprocessing)
extracted = features.at_cut(cut, image_sets, list(image_sets), weights_choice)
shapes = ", ".join(f"{image_sets[split].name} {array.shape}" for split, array in extracted.arrays.items())
print(f"Conv-base features at {cut.cut_layer}: {shapes}.")

# %% [markdown]
# ## Train the classifier on the features
# RMSprop at a low learning rate, binary cross-entropy. Four callbacks: `CachedValidation` scores the validation
# features after each epoch (what `validation_data` would do); `BestEpoch` keeps the weights of the epoch with
# the highest validation accuracy (ties: lowest validation loss) and restores them at the end; `TensorBoard`
# logs the curves (`make tensorboard RUN=...`); `backup_and_restore` backs the training up after every epoch, so
# that an interrupted run continues from its last finished epoch when it runs again.
#
# With `feature_flips` (on in the `cpu` profile) the classifier also trains on each training photo seen the other
# way round, almost for free: the cached block-4 maps are mirrored left to right and only block 5 runs over them
# (a tenth of a conv-base pass). A cat facing left is still a cat; twice the training vectors, one more cache entry.

# %%
classifier.compile(optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate), loss="binary_crossentropy",
                   metrics=["accuracy"])
# With feature_flips, the mirrored block-4 maps of each training photo too (through block 5): twice the inputs.
train_inputs, train_labels, flips_seconds = features.training_features(cut, image_sets["train"], extracted.arrays,
                                                                       weights_choice, feature_flips)
train_dataset = batches.make_batch_stream(train_inputs, train_labels, batch_size, shuffle=True, seed=seed)
callbacks = [training.CachedValidation(classifier, extracted.arrays["validation"], image_sets["validation"].labels),
             training.BestEpoch(),
             keras.callbacks.TensorBoard(log_dir=stage.folder / "logs"),
             stage.backup_and_restore()]
fitted = training.fit(classifier, train_dataset, epochs=epochs, callbacks=callbacks, verbose=verbose)
stage.save_history(fitted.rows)
stage.hand_off(classifier)

# %% [markdown]
# ## Learning curves
# Training and validation accuracy per epoch: the gap between them is how far the classifier overfits its 2000
# training photos, which dropout is there to slow.

# %%
figure = plots.learning_curves(fitted.rows, title="Stage 1: classifier on frozen VGG16 features")
stage.save_figure(figure, "learning_curves.png")

# %% [markdown]
# ## Where it goes wrong
# The confusion matrix of the validation set; the reliability diagram (does P(dog) = 0.9 mean nine dogs in
# ten?) with its expected calibration error; and the validation photos the classifier was most confident about
# and still got wrong.

# %%
held_out = [split for split in image_sets if split != "train"]
evaluations = evaluation.evaluate(cut, extracted.arrays, image_sets, held_out, weights_choice, test_time_augmentation,
                                  calibrate)
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
                       extraction_seconds=extracted.seconds + flips_seconds, features_from_cache=extracted.from_cache)

# %% [markdown]
# ## Conclusion
# What this stage tried: frozen ImageNet features and a small classifier trained on them. VGG16's weights expect
# BGR images with the ImageNet channel means subtracted; dividing pixels by 255, as the course notes did, feeds the
# network inputs it never saw in training (`preprocessing="rescale"` measures what that costs). The next stage
# trains on randomly augmented photos, against overfitting. What this run found, with the 95% interval of each
# accuracy and its counts, is printed below from the run's own numbers.

# %%
print(photo_results.conclusion(metrics))
