"""The core of the suite: where things live, what the stages are, the parameters, the machine's devices, atomic
files and the records a run writes. Nothing here imports TensorFlow at import time or knows about clusters; every
other part of `lib` stands on it.
"""
