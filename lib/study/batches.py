"""Training batches as one endless stream that can start at any batch, so that a resumed stage reads on exactly
where it stopped.

Pass number p over the examples (photos, features or pool entries) is ordered, and its random choices are drawn,
by a NumPy generator seeded with `(seed, p)` alone; batch number b of the stream is therefore a function of
`(seed, b)`, whichever process draws it and wherever it started. A stage that stopped after epoch k of
`steps_per_epoch` batches resumes with the stream started at batch `k * steps_per_epoch` and sees the very
batches an uninterrupted run would have seen (tf.data's own `shuffle(reshuffle_each_iteration=True)` keeps its
position inside the iterator, which Keras owns and nothing restores).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from lib.study import imagestore

# One pass's batch from the examples it holds (indices into the stored arrays) and that pass's own random draws.
Draw = Callable[[np.ndarray, Any], tuple[np.ndarray, np.ndarray]]
# A pass's random draws beyond its order (the pool's choice of entry, its feature flips), from its generator.
PassDraws = Callable[[np.random.Generator], Any]


@dataclasses.dataclass
class BatchStream:
    """Endless seeded batches of `count` examples, `batch_size` at a time (see the module docstring)."""

    count: int
    batch_size: int
    seed: int
    shuffle: bool
    draw: Draw
    signature: tuple
    pass_draws: PassDraws = lambda generator: None
    sort_batches: bool = False  # Read each batch's examples in stored order (a disk store reads faster so).

    @property
    def batches_per_pass(self) -> int:
        """Batches in one pass over the examples (the last one may be short)."""
        return -(-self.count // self.batch_size)

    def batches(self, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batch number `start` of the stream and every one after it, as NumPy arrays."""
        number, offset = divmod(start, self.batches_per_pass)
        while True:
            generator = np.random.default_rng([self.seed, number])
            order = generator.permutation(self.count) if self.shuffle else np.arange(self.count)
            draws = self.pass_draws(generator)
            for batch in range(offset, self.batches_per_pass):
                chosen = order[batch * self.batch_size:(batch + 1) * self.batch_size]
                yield self.draw(np.sort(chosen) if self.sort_batches else chosen, draws)
            number, offset = number + 1, 0

    def dataset(self, start: int = 0):
        """The stream from batch `start` on as a prefetched `tf.data.Dataset` (endless). tf.data's autotuner is off:
        on small CPU machines it was seen to leave `fit` idle for seconds while it re-planned the pipeline."""
        import tensorflow as tf

        dataset = tf.data.Dataset.from_generator(lambda: self.batches(start), output_signature=self.signature)
        options = tf.data.Options()
        options.autotune.enabled = False
        options.deterministic = True
        return dataset.prefetch(2).with_options(options)

    def __iter__(self):
        """One pass from the start, as tensors (what iterating a finite dataset gives)."""
        return iter(self.dataset().take(self.batches_per_pass))


def make_batch_stream(inputs: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool = False,
                    seed: int = 0) -> BatchStream:
    """Batch inputs (images or features, in memory or in a disk store) into an endless stream of training batches
    (`BatchStream`): with `shuffle`, each pass in a new order drawn from `(seed, pass)`, so that a resumed
    stage can start the stream where it stopped."""
    import tensorflow as tf

    labels = labels.astype("float32")
    on_disk = isinstance(inputs, imagestore.DiskImages)
    shape = (None, inputs.size, inputs.size, 3) if on_disk else (None, *inputs.shape[1:])
    dtype = tf.uint8 if on_disk else tf.as_dtype(inputs.dtype)
    return BatchStream(len(labels), batch_size, seed, shuffle,
                        lambda chosen, draws: (inputs[chosen], labels[chosen]),
                        (tf.TensorSpec(shape, dtype), tf.TensorSpec((None,), tf.float32)),
                        sort_batches=on_disk and shuffle)
