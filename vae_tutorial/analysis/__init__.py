"""Analysis: what a trained VAE does: inference gaps, the aggregate posterior, gradient
signal-to-noise ratios, lossless compression.
"""
