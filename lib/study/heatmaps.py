"""Class activation heatmaps (Grad-CAM): where in a photo the trained model found its evidence.

For each photo, the gradient of the predicted class's score (the classifier's logit for "dog", its negative
for "cat") with respect to the last conv layer's feature maps, averaged over the map, weighs each of the
512 maps; their weighted sum, with negative evidence cut off, is the heatmap (Selvaraju et al., 2017;
Chollet's book shows it for VGG16). The score is taken before the sigmoid, so confident predictions, whose
probability has saturated at 0 or 1, still get a heatmap.
"""
from __future__ import annotations

import numpy as np

from lib.study import models, plots, scores
from lib.study.photos import ImageSet

LAST_CONV = "block5_conv3"


def gradcam(conv_base, classifier, preprocessing: str, images: np.ndarray, layer: str = LAST_CONV,
            batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps `(n, h, w)` in 0..1 at `layer`'s resolution, and P(dog), of uint8 photos `(n, size, size, 3)`."""
    import tensorflow as tf

    to_layer = models.conv_segment(conv_base, layer, preprocessing=preprocessing)
    after = models.conv_segment(conv_base, None, start=layer)
    *hidden, output = classifier.layers
    kernel, bias = (tf.cast(weight, tf.float32) for weight in output.weights)
    heatmaps, probabilities = [], []
    for start in range(0, len(images), batch_size):
        batch = tf.constant(images[start:start + batch_size], dtype=tf.float32)
        with tf.GradientTape() as tape:
            activations = to_layer(batch, training=False)
            tape.watch(activations)
            x = after(activations, training=False)
            for layer_ in hidden:
                x = layer_(x, training=False)
            logit = tf.matmul(tf.cast(x, tf.float32), kernel) + bias
            score = tf.where(logit > 0, logit, -logit)  # The predicted class's own evidence.
        gradients = tf.cast(tape.gradient(score, activations), tf.float32)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        maps = tf.nn.relu(tf.reduce_sum(weights * tf.cast(activations, tf.float32), axis=-1)).numpy()
        heatmaps.append(maps / np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12))
        probabilities.append(tf.sigmoid(logit).numpy().reshape(-1))
    if not heatmaps:
        return np.zeros((0, 1, 1)), np.zeros((0,))
    return np.concatenate(heatmaps), np.concatenate(probabilities)


def confident_photos(conv_base, classifier, preprocessing: str, image_set: ImageSet, probabilities: np.ndarray,
                     count: int = 6):
    """A figure of the photos the model was surest about, right and wrong, with their heatmaps."""
    chosen = scores.confident_examples(image_set.labels, probabilities, count)
    groups = {}
    for group, indices in chosen.items():
        maps, _ = gradcam(conv_base, classifier, preprocessing, image_set.images[indices])
        groups[group] = {"images": image_set.images[indices], "heatmaps": maps, "probabilities": probabilities[indices],
                         "labels": image_set.labels[indices], "names": [image_set.files[i] for i in indices]}
    return plots.heatmap_grid(groups, title=f"What the model looks at ({LAST_CONV} Grad-CAM), {image_set.name} photos")


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A uint8 photo with its heatmap (0..1, any size) drawn over it in the jet colours."""
    import matplotlib
    from PIL import Image

    resized = np.asarray(Image.fromarray((heatmap * 255).astype(np.uint8)).resize(image.shape[1::-1],
                                                                                   Image.BILINEAR)) / 255.0
    colours = matplotlib.colormaps["jet"](resized)[..., :3] * 255
    return (image * (1 - alpha) + colours * alpha).clip(0, 255).astype(np.uint8)
