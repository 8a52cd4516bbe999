"""The runner's machinery: executing notebooks (papermill, nbconvert, kernels, a local cluster's workers),
whether a stage is up to date, the run's manifest and provenance, the forecast and PROFILE=auto's schedule,
notebook pairing, Colab, and `make predict`.
"""
