"""vae_tutorial: the tested building blocks of the book *Variational Autoencoders, Correctly*.

Notation: encoder ``q_φ(z|x)``, decoder ``p_θ(x|z)``, prior ``p(z) = N(0, I)``.
"""
from .device import get_device, seed_everything
from .losses import (
    ELBOTerms,
    bernoulli_log_likelihood,
    continuous_bernoulli_log_likelihood,
    discretized_logistic_log_likelihood,
    elbo,
    estimate_log_likelihood,
    gaussian_log_likelihood,
    iwae_bound,
    kl_normal,
    kl_standard_normal,
    reparameterize,
)
from .autoregressive import PixelCNNDecoder, PixelVAE
from .models import VAE, Autoencoder, ConditionalVAE, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from .train import History, fit, linear_warmup
from . import autoregressive, check, data, discrete, evaluate, notebook, plots, ppca, vq  # noqa: E402  (submodules as attributes)
from . import ais, estimators  # noqa: E402  (Part IV: gradient estimators, AIS and BDMC)
from .ais import ais_log_likelihood, bdmc
from .data import load_dataset
from .estimators import check_dreg_surrogate, iwae_surrogate
from .diffusion import DiffusionModel, diffusion_bound
from .evaluate import evaluate_model
from .flows import FlowVAE, check_flow_logdet
from .hierarchical import HierarchicalVAE
from .notebook import glue
from .priors import VampPriorVAE
from . import flows, priors  # noqa: E402  (submodules as attributes)
from .vq import VQVAE

__version__ = "0.1.0"

notebook.register()  # in IPython: solution cells wait until asked (see notebook.py)

__all__ = [
    "Autoencoder", "ConditionalVAE", "ConvDecoder", "ConvEncoder", "DiffusionModel", "ELBOTerms", "FlowVAE",
    "HierarchicalVAE", "History", "MLPDecoder", "MLPEncoder", "PixelCNNDecoder", "PixelVAE", "VAE", "VQVAE",
    "ais", "ais_log_likelihood", "autoregressive", "bdmc", "bernoulli_log_likelihood", "check",
    "check_dreg_surrogate", "continuous_bernoulli_log_likelihood",
    "data", "diffusion_bound", "discrete", "discretized_logistic_log_likelihood", "elbo",
    "estimate_log_likelihood", "estimators", "evaluate", "evaluate_model", "fit", "gaussian_log_likelihood",
    "get_device", "glue", "iwae_bound", "iwae_surrogate", "kl_normal", "kl_standard_normal", "linear_warmup", "load_dataset",
    "notebook", "plots", "reparameterize", "seed_everything", "vq",
    "VampPriorVAE", "check_flow_logdet", "flows", "priors",
]
