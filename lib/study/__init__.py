"""The study itself, what the stage notebooks import: photos (their listing, the data set's download, the synthetic
set, decoding once, the disk store), the VGG16 weights, the models, features and the block-4 cache, the
augmentation pool, batch streams, training, evaluation, plots, heatmaps, tf.distribute, and the object that opens
and closes a stage (`stage_run`).
"""
