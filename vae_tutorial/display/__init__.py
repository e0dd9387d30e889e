"""What draws and explores: plots, the latent-space explorer (widgets and its kernel-free
JavaScript), and the notebook conveniences the chapters use.
"""
