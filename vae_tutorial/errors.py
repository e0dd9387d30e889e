"""The errors the package raises on purpose, and the argument checks that raise them.

Every mistake a user can make (a bad argument, bad data, a corrupt or mismatched
checkpoint, a data file that is not what it claims to be) ends in one of the classes
below, with a message that names the argument, file or key and says how to fix it.
They subclass the built-in ``ValueError`` / ``TypeError`` (so existing
``except ValueError`` code keeps working) and :class:`VAETutorialError`, so
``except vt.errors.VAETutorialError`` catches exactly the package's own errors.

The checks run once at the boundary of a public function (``fit``, ``evaluate_model``,
the model constructors, the command line), never inside the per-step training loop.
"""
from __future__ import annotations

import math
import numbers
import os
import threading
from contextlib import contextmanager

import torch
from torch import Tensor

__all__ = [
    "VAETutorialError", "ArgumentError", "ArgumentTypeError", "DataError", "CheckpointError",
    "ResumeMismatchError", "DeviceError", "RunLockedError", "NameNotFoundError", "DOCUMENTED_ERRORS", "SEED_MAX",
    "check_int", "check_float", "check_seed", "check_data", "check_model", "unchecked_data",
    "check_unit_interval", "data_checks_enabled", "check_one_latent_vae", "check_tensor",
    "check_memory", "memory_limit",
]

SEED_MAX = 2**32 - 1
"""The largest seed accepted, because NumPy's legacy seeding (``np.random.seed``) stops at ``2**32 − 1``."""


class VAETutorialError(Exception):
    """Base class of every error the package raises deliberately (the message says what to do)."""


class ArgumentError(VAETutorialError, ValueError):
    """An argument has the right type but a value out of range (``latent_dim=0``, ``lr=nan``)."""


class ArgumentTypeError(VAETutorialError, TypeError):
    """An argument has the wrong type (``epochs=2.5``, a model with no parameters)."""


class DataError(VAETutorialError, ValueError):
    """Data that cannot be trained or evaluated on: empty, NaN/inf, pixels outside the range
    the likelihood needs (e.g. 0..255 for a Bernoulli decoder), labels out of range."""


class CheckpointError(VAETutorialError, ValueError):
    """A checkpoint file that is unreadable, incomplete, or whose digest does not match its contents."""


class ResumeMismatchError(CheckpointError):
    """Resuming from a checkpoint made with different settings, data or model; the message lists what differs."""


class DeviceError(VAETutorialError, ValueError):
    """A device was asked for (``$VAE_TUTORIAL_DEVICE``, ``device=...``) that this machine does not have."""


class RunLockedError(VAETutorialError, RuntimeError):
    """Another process is writing to the same run folder (command line ``train``)."""


class NameNotFoundError(VAETutorialError, AttributeError):
    """``vt.X`` for a name the package does not have (a typo, or a name from another library);
    the message suggests the nearest public names. An ``AttributeError``, so ``hasattr`` works."""


DOCUMENTED_ERRORS: tuple[type[BaseException], ...] = (VAETutorialError,)
"""The errors a caller may catch; every deliberate error subclasses :class:`VAETutorialError`
(including ``data.DatasetError``, ``train.NonFiniteLossError`` and ``cli.CLIError``)."""


# ----------------------------------------------------------------------------- argument checks

def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_int(name: str, value, *, min: int | None = None, max: int | None = None) -> int:
    """``value`` as an ``int`` (an integer-valued float such as ``3.0`` is not accepted either:
    ``epochs=2.5`` and ``epochs=2.0`` are both refused, so nothing is silently rounded)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, Tensor)):
        raise ArgumentTypeError(f"{name} must be an integer, got {_show(value)} ({type(value).__name__})")
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise ArgumentTypeError(f"{name} must be an integer, got a tensor {_show(value)}")
        value = value.item()
    value = int(value)
    if (min is not None and value < min) or (max is not None and value > max):
        lo = "" if min is None else f"≥ {min}"
        hi = "" if max is None else f"≤ {max}"
        raise ArgumentError(f"{name} must be an integer {' and '.join(s for s in (lo, hi) if s)}, got {value}")
    return value


def check_float(name: str, value, *, min: float | None = None, max: float | None = None,
                min_open: bool = False) -> float:
    """``value`` as a finite ``float`` in ``[min, max]`` (``(min, max]`` with ``min_open``)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Tensor)):
        raise ArgumentTypeError(f"{name} must be a number, got {_show(value)} ({type(value).__name__})")
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_complex():
            raise ArgumentTypeError(f"{name} must be a number, got a tensor {_show(value)}")
        value = value.item()
    value = float(value)
    if not math.isfinite(value):
        raise ArgumentError(f"{name} must be a finite number, got {value}")
    if min is not None and (value <= min if min_open else value < min):
        if min == 0:
            raise ArgumentError(f"{name} must be {'positive' if min_open else 'non-negative (≥ 0)'}, got {value}")
        raise ArgumentError(f"{name} must be {'>' if min_open else '≥'} {min}, got {value}")
    if max is not None and value > max:
        raise ArgumentError(f"{name} must be ≤ {max}, got {value}")
    return value


def check_seed(value, name: str = "seed") -> int:
    """A seed in ``[0, SEED_MAX]``."""
    return check_int(name, value, min=0, max=SEED_MAX)


def check_model(model, name: str = "model") -> None:
    """Refuse an object that is not a VAE-like module with parameters (``fit(torch.nn.Identity())``)."""
    if not isinstance(model, torch.nn.Module):
        raise ArgumentTypeError(f"{name} must be a torch.nn.Module such as vae_tutorial.VAE, "
                                f"got {type(model).__name__}")
    missing = [m for m in ("encode", "decode", "log_likelihood") if not callable(getattr(model, m, None))]
    if missing:
        raise ArgumentTypeError(f"{name} must be a VAE (with encode, decode and log_likelihood methods), "
                                f"got a {type(model).__name__} without {', '.join(missing)}")
    if next(model.parameters(), None) is None:
        raise ArgumentTypeError(f"{name} ({type(model).__name__}) has no parameters to train or evaluate")


def memory_limit() -> tuple[int, str]:
    """The bytes this process may still allocate, and what sets that limit, in words.

    The smallest of: the machine's physical memory, a container's memory limit (cgroup
    ``memory.max``) and the process's own limits (``ulimit -v``, ``ulimit -d``, less what the
    process already uses). A limit that cannot be read is ignored; with none readable (not
    POSIX), 64 GiB.
    """
    limits = []
    try:
        limits.append((os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's memory"))
    except (AttributeError, ValueError, OSError):
        pass
    for cgroup in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(cgroup) as f:
                limits.append((int(f.read().strip()), "the container's memory limit"))
            break
        except (OSError, ValueError):  # absent, or "max" (no limit)
            continue
    try:
        import resource

        used = _process_memory()
        for which, name, shell in ((resource.RLIMIT_AS, "VmSize", "ulimit -v"),
                                   (resource.RLIMIT_DATA, "VmData", "ulimit -d")):
            soft = resource.getrlimit(which)[0]
            if soft != resource.RLIM_INFINITY and soft >= 0:
                limits.append((max(soft - used.get(name, 0), 0),
                               f"the memory this process may still allocate under {shell}"))
    except (ImportError, OSError, ValueError):
        pass
    return min(limits, default=(1 << 36, "64 GiB"), key=lambda limit: limit[0])


def _process_memory() -> dict[str, int]:
    """``VmSize`` and ``VmData`` of this process in bytes (Linux's ``/proc/self/status``; else empty)."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmSize", "VmData"):
                    out[key] = int(value.split()[0]) * 1024  # "1234 kB"
    except (OSError, ValueError, IndexError):
        pass
    return out


def check_memory(what: str, fix: str, *, parameters: int = 0, buffer_bytes: int = 0) -> None:
    """Refuse, before anything is allocated, a model that cannot fit in memory.

    Training holds four float32 copies of every parameter (weights, gradients and Adam's two
    moments: 16 bytes each); buffers (schedules, masks) are held once, ``buffer_bytes`` in
    all. Raises :class:`ArgumentError` naming the size, the limit (:func:`memory_limit`) and
    ``fix``, which names the argument to change ("choose smaller layer widths (hidden)").
    Every model constructor calls it with its own count: one guard, one message.
    """
    need = 16 * parameters + buffer_bytes
    limit, source = memory_limit()
    if need <= limit:
        return
    gib = 2**30
    if parameters:
        size = (f"would need {need / gib:.1f} GiB to train: {parameters:,} parameters × 16 bytes (weights, "
                "gradients and Adam's moments in float32)")
        if buffer_bytes >= gib / 20:  # shown when it adds something at this precision
            size += f" and {buffer_bytes / gib:.1f} GiB of fixed tensors (schedules, masks)"
    else:
        size = f"would need {buffer_bytes / gib:.1f} GiB"
    raise ArgumentError(f"{what} {size}, more than {source} ({limit / gib:.1f} GiB); {fix}")


def check_finite_parameters(model, name: str = "model") -> None:
    """Refuse a model with a NaN or infinite weight: every bound it gives would be NaN.

    A diverged training run, or a damaged or hand-edited checkpoint, leaves such weights;
    evaluating or sampling from them would print NaN nats or blank images without a word.
    """
    for pname, p in model.named_parameters():
        if p.is_meta:  # no values to check or compute with
            raise ArgumentError(f"{name}'s parameter {pname!r} is on the meta device, which holds shapes but "
                                "no values; build the model on a real device, or load its weights with "
                                "model.to_empty(device='cpu') then load_state_dict(...)")
        if not bool(torch.isfinite(p.detach()).all()):
            bad = int((~torch.isfinite(p.detach())).sum())
            raise ArgumentError(f"{name} has {bad} non-finite (NaN or infinite) value(s) in its parameter "
                                f"{pname!r}: its training diverged or its checkpoint was damaged; train it "
                                "again (a lower learning rate helps) or load a good checkpoint")


def check_one_latent_vae(model, what: str, name: str = "model", *, conditional: bool = False,
                         autoencoder: bool = False, instead: str | None = None) -> None:
    """Refuse a model that a helper built for one Gaussian code cannot handle, naming what it supports.

    ``what`` (e.g. ``"inference_gaps"``) needs the model of Part I–II: one diagonal-Gaussian
    code ``z`` with prior ``p(z) = N(0, I)``, posterior ``q_φ(z|x)`` from ``model.encode(x)``
    and ``p_θ(x|z)`` from ``model.decode(z)`` (a :class:`~vae_tutorial.models.vae.VAE`). A model
    that computes its own bound (``elbo_terms``: hierarchical latents, an autoregressive
    decoder, a diffusion chain) is refused, and so are a conditional model (``decode`` needs
    ``y``) and a deterministic autoencoder (no posterior) unless ``conditional`` /
    ``autoencoder`` say the helper handles them. ``instead`` names what to use for such a
    model (default: the functions that handle every model).
    """
    check_model(model, name)
    kind = type(model).__name__
    supported = "a vae_tutorial.VAE" + (", ConditionalVAE" if conditional else "") \
        + (", Autoencoder" if autoencoder else "")
    if callable(getattr(model, "elbo_terms", None)):
        raise ArgumentTypeError(
            f"{name}: {what} supports models with one Gaussian code z ~ N(0, I) decoded by decode(z) "
            f"({supported}), got a {kind}, whose latent variables are not one such code (hierarchical "
            "layers, an autoregressive decoder or a diffusion chain); use a VAE, or "
            + (instead or "the functions that handle every model (vt.elbo, vt.iwae_bound, vt.evaluate_model, "
                          "model.sample)"))
    if not conditional and hasattr(model, "num_classes"):
        raise ArgumentTypeError(f"{name}: {what} supports {supported}, got a conditional {kind} "
                                "(its encode and decode need labels y); use an unconditional VAE")
    if not autoencoder and getattr(model, "encode", None) is not None and _is_autoencoder(model):
        raise ArgumentTypeError(f"{name}: {what} supports {supported}, got a deterministic {kind} "
                                "(no posterior q_φ(z|x), no KL); use a VAE")


def _is_autoencoder(model) -> bool:
    # a class attribute, not isinstance: errors sits below the models in the import graph
    return getattr(type(model), "deterministic_encoder", False) is True


def check_tensor(name: str, value, *, dim: int | None = None, finite: bool = True) -> Tensor:
    """``value`` as a floating tensor (a NumPy array or nested list is converted), checked before any work.

    Refuses a non-numeric value (:class:`ArgumentTypeError`), a tensor with another number of
    dimensions than ``dim`` and, with ``finite``, NaN or infinite entries (:class:`DataError`):
    they would turn every statistic computed from it into NaN without a word.
    """
    if not isinstance(value, Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            raise ArgumentTypeError(f"{name} must be a tensor of numbers, got {_show(value)} "
                                    f"({type(value).__name__})") from None
    if value.dtype == torch.bool or value.is_complex() or not (value.is_floating_point()
                                                               or value.dtype in _INTEGER_DTYPES):
        raise ArgumentTypeError(f"{name} must be a tensor of real numbers, got dtype {value.dtype}")
    if not value.is_floating_point():
        value = value.to(torch.get_default_dtype())
    if dim is not None and value.dim() != dim:
        raise ArgumentError(f"{name} must have {dim} dimension(s), got shape {tuple(value.shape)}")
    if finite and value.numel() and not bool(torch.isfinite(value.detach()).all()):
        bad = int((~torch.isfinite(value.detach())).sum())
        raise DataError(f"{name} holds {bad} NaN or infinite value(s); every result computed from it would be "
                        "NaN: remove them (or fix what produced them) first")
    return value


_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def expected_image_shape(model) -> tuple[int, ...] | None:
    """The ``(C, H, W)`` (or ``(D,)``) of one data example that ``model`` reads, if it says.

    Read from the model (``image_shape``, ``shape``) or its decoder (``image_shape``,
    ``shape``, ``out_shape``); a discretised-logistic decoder outputs two channels per data
    channel. ``None`` for a model that does not say (no check is then possible).
    """
    for owner in (model, getattr(model, "decoder", None)):
        for attr in ("image_shape", "shape", "out_shape"):
            value = getattr(owner, attr, None) if owner is not None else None
            if isinstance(value, (tuple, list)) and value and all(isinstance(v, int) for v in value):
                shape = tuple(value)
                if owner is not model and getattr(model, "likelihood", None) == "discretized_logistic" \
                        and attr == "out_shape" and shape[0] % 2 == 0:
                    shape = (shape[0] // 2, *shape[1:])
                return shape
    return None


def check_images(model, images: Tensor, name: str = "x") -> Tensor:
    """Refuse images of another shape than ``model`` reads, before any work; match its dtype.

    Returns ``images`` in the floating dtype of the model's weights (float64 or half data
    for a float32 model are converted, as ``x.float()`` would; the data are 0/1 or grey
    levels, which every float type holds). A flat ``(B, D)`` batch is accepted when D is the
    number of values of one image.
    """
    if not isinstance(images, Tensor):
        return images  # the caller's own type check names what was given
    shape = expected_image_shape(model)
    got = tuple(images.shape[1:])
    if shape is not None and images.dim() < 2:
        raise DataError(f"{name}: the model reads a batch of examples of shape {shape}, but got a tensor "
                        f"of shape {tuple(images.shape)}, which has no batch dimension; stack the images "
                        f"into (N, {', '.join(map(str, shape))}), or use x.unsqueeze(0) for one image")
    if shape is not None and got != shape and got != (math.prod(shape),):
        raise DataError(f"{name}: the model reads examples of shape {shape}, but these have shape {got} "
                        f"(a batch of {tuple(images.shape)}); use data of the size the model was built for, "
                        "or build the model for this data's shape")
    weight = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
    if weight is not None and images.is_floating_point() and images.dtype != weight.dtype \
            and weight.is_floating_point():
        images = images.to(weight.dtype)
    return images


# Likelihood → the closed interval its data must lie in (None: any finite value).
_LIKELIHOOD_RANGE = {"bernoulli": (0.0, 1.0), "continuous_bernoulli": (0.0, 1.0), "gaussian": None}


def check_data(images: Tensor, labels: Tensor | None = None, *, likelihood: str | None = None,
               num_classes: int | None = None, name: str = "data") -> None:
    """Refuse data that would train or evaluate to a silently wrong number.

    One pass over ``images`` (``torch.aminmax``): non-empty, finite, and inside
    ``[0, 1]`` when the likelihood needs it (Bernoulli and continuous Bernoulli decoders).
    ``labels``, when given and needed (``num_classes``), must be integers in
    ``[0, num_classes)``.
    """
    if not isinstance(images, Tensor):
        raise ArgumentTypeError(f"{name} must hold a tensor of images, got {type(images).__name__}")
    if images.dim() == 0 or images.shape[0] == 0:
        raise DataError(f"{name} is empty (shape {tuple(images.shape)}); there is nothing to train or evaluate on")
    if images[0].numel() == 0:
        raise DataError(f"{name} has examples with no pixels (shape {tuple(images.shape)})")
    if not (images.is_floating_point() or images.dtype in (torch.uint8, torch.int64, torch.int32)):
        raise DataError(f"{name} has dtype {images.dtype}; images must be floating point")
    lo, hi = (float(v) for v in torch.aminmax(images.detach()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = int((~torch.isfinite(images.detach())).flatten(1).any(1).nonzero()[0, 0])
        raise DataError(f"{name} holds NaN or infinite pixels (first in example {bad}); "
                        "clean the data before training or evaluating")
    allowed = _LIKELIHOOD_RANGE.get(likelihood) if likelihood is not None else None
    if allowed is not None and (lo < allowed[0] or hi > allowed[1]):
        raise DataError(
            f"{name} has pixels in [{lo:g}, {hi:g}], but a {likelihood} decoder needs data in "
            f"[{allowed[0]:g}, {allowed[1]:g}]; divide 0..255 images by 255 (or map [-1, 1] with (x + 1) / 2), "
            "or use likelihood='gaussian' for real-valued data")
    if num_classes is not None:
        if labels is None:
            raise DataError(f"{name} has no labels, but a conditional model needs them")
        if labels.dim() != 1:
            raise DataError(f"{name} labels must be class indices of shape (N,), got shape {tuple(labels.shape)}; "
                            "for one-hot labels pass labels.argmax(1)")
        if labels.shape[:1] != images.shape[:1]:
            raise DataError(f"{name} has {images.shape[0]} images but labels of shape {tuple(labels.shape)}")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise DataError(f"{name} labels must be integers, got dtype {labels.dtype}")
        lmin, lmax = (int(v) for v in torch.aminmax(labels))
        if lmin < 0 or lmax >= num_classes:
            raise DataError(f"{name} labels must lie in [0, {num_classes}) for this model's "
                            f"num_classes={num_classes}, got labels from {lmin} to {lmax}")


# ----------------------------------------------------------------------------- per-call pixel checks

_local = threading.local()  # per thread: a fit in one thread does not switch checks off in another


def data_checks_enabled() -> bool:
    """False inside :func:`unchecked_data`, i.e. where the caller has checked the whole data set."""
    return not getattr(_local, "depth", 0)


@contextmanager
def unchecked_data():
    """Skip the per-call range check of the likelihoods: ``fit`` and ``evaluate_model``
    check the whole data set once with :func:`check_data`, so the hot loop does not pay again."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1


def check_unit_interval(x: Tensor, where: str) -> None:
    """Refuse ``x`` outside ``[0, 1]`` (or non-finite) for the Bernoulli-type likelihoods.

    Costs one reduction over ``x``; skipped inside :func:`unchecked_data`.
    """
    if getattr(_local, "depth", 0) or x.numel() == 0:
        return
    lo, hi = torch.aminmax(x.detach())
    lo, hi = float(lo), float(hi)
    if not (0.0 <= lo and hi <= 1.0):  # also False for NaN
        raise DataError(f"{where} needs data x in [0, 1], got values in [{lo:g}, {hi:g}]; divide 0..255 "
                        "images by 255, or use gaussian_log_likelihood for real-valued data")
