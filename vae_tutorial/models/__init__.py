"""The models: the VAE and its encoders and decoders, conditional, hierarchical, autoregressive,
diffusion, normalising-flow posteriors, learned priors, vector-quantised.

``vae_tutorial.models.vae`` also re-exports what :mod:`vae_tutorial.models.vae` holds (the module
``models`` before the package was grouped into sub-packages), so ``vt.models.VAE`` and
``from vae_tutorial.models.vae import MLPEncoder`` keep working.
"""
from .vae import (  # noqa: F401
    LIKELIHOODS,
    VAE,
    Autoencoder,
    ConditionalVAE,
    ConvDecoder,
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    Shape,
)
