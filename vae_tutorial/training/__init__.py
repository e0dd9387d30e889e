"""Training: data sets, devices and seeds, the training loop, data-parallel training,
checkpoints and what a resume compares, safe file writing, timing.
"""
