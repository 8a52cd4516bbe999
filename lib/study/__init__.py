"""The study itself, what the stage notebooks import: photos and their disk store, the VGG16 weights, the models,
features and the block-4 cache, the augmentation pool, training, evaluation, plots, heatmaps, tf.distribute, and
the object that opens and closes a stage (`stage_run`).
"""
