"""vae_tutorial: the tested building blocks of the book *Variational Autoencoders, Correctly*.

Notation: encoder ``q_φ(z|x)``, decoder ``p_θ(x|z)``, prior ``p(z) = N(0, I)``.
"""
import importlib
import importlib.abc
import importlib.util
import sys

from .training.device import get_device, seed_everything
from .maths.losses import (
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
from .models.autoregressive import PixelCNNDecoder, PixelVAE
from .models.vae import VAE, Autoencoder, ConditionalVAE, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from .training.train import History, fit, linear_warmup
from . import check  # noqa: E402
from .training.data import load_dataset
from .models.diffusion import DiffusionModel, diffusion_bound
from .evaluation.evaluate import evaluate_model
from .models.hierarchical import HierarchicalVAE
from .display.notebook import glue

# Part IV: richer posteriors and priors (ch17), gradient estimators and AIS (ch18), discrete latents (ch19)
from .evaluation import ais
from .evaluation.ais import ais_log_likelihood, bdmc
from .maths import discrete, estimators
from .maths.estimators import check_dreg_surrogate, iwae_surrogate
from .models import flows, priors, vq
from .models.flows import FlowVAE, check_flow_logdet
from .models.priors import VampPriorVAE
from .models.vq import VQVAE

# Each module's place in the sub-packages. Until the package was grouped (issue 24) every module
# sat at the top; their old names stay importable (``vt.losses``, ``vae_tutorial.train``,
# ``from vae_tutorial.data import binarize``), so code written against them keeps working.
MODULES = {
    "losses": "maths.losses", "gradients": "maths.gradients", "ppca": "maths.ppca",
    "autoregressive": "models.autoregressive", "diffusion": "models.diffusion",
    "hierarchical": "models.hierarchical",
    "data": "training.data", "device": "training.device", "distributed": "training.distributed",
    "files": "training.files", "identity": "training.identity", "timing": "training.timing",
    "train": "training.train",
    "compare": "evaluation.compare", "evaluate": "evaluation.evaluate",
    "aggregate_posterior": "analysis.aggregate_posterior", "amortisation": "analysis.amortisation",
    "compression": "analysis.compression", "gradient_snr": "analysis.gradient_snr",
    "notebook": "display.notebook", "plots": "display.plots", "widgets": "display.widgets",
}
"""Old top-level module name -> its module under the sub-packages (``models`` is now a sub-package
that re-exports what the module ``models`` held)."""


class _OldModuleNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import vae_tutorial.train`` (an old name) gives the module it names now, imported on
    first use: ``import vae_tutorial`` stays as quick as before (ipywidgets only with widgets)."""

    def __init__(self):
        self._specs = {}

    def find_spec(self, fullname, path=None, target=None):
        package, _, old = fullname.rpartition(".")
        return importlib.util.spec_from_loader(fullname, self) if package == __name__ and old in MODULES else None

    def create_module(self, spec):
        module = importlib.import_module(f"{__name__}.{MODULES[spec.name.rpartition('.')[2]]}")
        self._specs[spec.name] = module.__spec__  # loading overwrites it with the old name's spec
        return module

    def exec_module(self, module):
        # Already executed under its new name. Loading set its __spec__ to the old name's; give it
        # back, or importlib.reload(vt.widgets) would reload nothing.
        module.__spec__ = self._specs.pop(module.__spec__.name)


sys.meta_path.append(_OldModuleNames())


def __getattr__(name):  # vt.train, vt.widgets, ...: the old names as attributes, on first use
    if name in MODULES:
        return importlib.import_module(f".{name}", __name__)
    from difflib import get_close_matches

    from .errors import NameNotFoundError

    near = get_close_matches(name, [*__all__, *MODULES], n=3)
    raise NameNotFoundError(f"module {__name__!r} has no attribute {name!r}"
                            + (f"; did you mean {', '.join(near)}?" if near else ""))

__version__ = "0.1.0"

from .display import notebook  # noqa: E402  (also vt.notebook, set above)

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
