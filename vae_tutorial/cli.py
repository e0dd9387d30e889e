"""Command line: train a VAE, evaluate it, draw samples from it.

``python -m vae_tutorial <command>`` (or the ``vae-tutorial`` script) with three commands:

* ``train`` fits a VAE with :func:`~vae_tutorial.training.train.fit` and writes a *run folder*:
  ``checkpoint.pt`` (weights, optimiser and history, loaded with ``weights_only=True``)
  and ``config.json`` (data set and architecture, enough to rebuild the model);
* ``evaluate`` prints the test ELBO, the IWAE estimate of ``−log p_θ(x)`` in nats and
  bits/dim, the active units and the reconstruction error of a run;
* ``sample`` decodes ``z ~ p(z) = N(0, I)`` and writes the means of ``p_θ(x|z)`` as a PNG grid.

Mistakes in the input (a missing run folder, a corrupt checkpoint, an unknown data set,
an option out of range, a device this machine lacks) end with one ``error:`` line on
stderr and exit status 1 (2 for a malformed command line), never a traceback and never
a half-written run folder; ``--debug`` shows the full traceback instead. ``train`` locks
its run folder (an OS file lock), so a second ``train`` on the same ``--out`` refuses.

Run folders own their files. ``train`` writes only into a folder that is new, empty, or a
run folder it made (marked by ``.vae_tutorial-run.json``, which also records the digest of
the ``config.json`` it wrote); it never overwrites or deletes a file it did not write.
``evaluate`` and ``sample`` refuse a run whose ``config.json`` was edited after training
(another likelihood, binarisation or data set would silently change what the checkpoint
means). Every file is written atomically (:func:`vae_tutorial.training.files.atomic_write`): a full
disk or a kill leaves the previous file intact and prints one ``error:`` line. SIGTERM stops
a command as Ctrl-C does.

Under ``torchrun --nproc-per-node W -m vae_tutorial train ...`` the W processes train one run
data-parallel (:mod:`vae_tutorial.training.distributed`; ``--batch-size`` is the global batch): rank 0
locks and writes the run folder and prints, the others train silently, and an error in any
process before training starts ends every process with one ``error:`` line.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import torch

from . import __version__
from .training import distributed
from .training.data import BINARIZE_OPTIONS, DATASETS, DatasetError, load_dataset
from .training.device import resolve_device
from .errors import SEED_MAX, RunLockedError, VAETutorialError, check_seed
from .evaluation.evaluate import evaluate_model
from .training.files import atomic_write
from .models.vae import LIKELIHOODS, VAE, ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from .training.train import NonFiniteLossError, check_checkpoint, clean_stale_temporaries, fit, linear_warmup, load_checkpoint

__all__ = ["main", "build_model", "load_run", "CONFIG_FILE", "CHECKPOINT_FILE", "CLIError"]

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
RUN_MARKER = ".vae_tutorial-run.json"
"""Written by ``train`` into every run folder it makes: the folder is the command's to write."""
CONFIG_FORMAT = 1
MODELS = ("mlp", "conv")
DEFAULT_HIDDEN = {"mlp": [400], "conv": [256]}
DEFAULT_EPOCHS = {"digits": 50, None: 10}  # digits: 12 steps an epoch, so more epochs for the same work
ARCHITECTURE_KEYS = ("dataset", "binarize", "image_shape", "model", "latent_dim", "hidden", "likelihood")
MAX_SAMPLES = 10_000
"""``sample --n`` above this is refused up front (10 000 images already make a 100×100 grid)."""
MAX_PNG_PIXELS = 50_000_000
"""``sample``: the PNG (grid × ``--scale``²) may hold at most this many pixels (~200 MB while drawn)."""

EPILOG = """\
examples:
  python -m vae_tutorial train                          # 8x8 digits, offline, a few seconds
  python -m vae_tutorial train --dataset fashion-mnist --epochs 10 --latent-dim 20
  python -m vae_tutorial train --dataset mnist --model conv --binarize dynamic --out runs/mnist-conv
  torchrun --nproc-per-node 2 -m vae_tutorial train --dataset fashion-mnist   # 2 processes (DDP)
  python -m vae_tutorial evaluate --run runs/digits-mlp --k 1000
  python -m vae_tutorial sample --run runs/digits-mlp --n 64 --out samples.png

Each command has its own help: python -m vae_tutorial train --help
"""


class CLIError(VAETutorialError):
    """A mistake in the command line or its files; printed as one ``error:`` line."""


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def validate_config(config: dict, path: Path | str = CONFIG_FILE) -> dict:
    """Check a run's ``config.json`` against what :func:`build_model` and the commands need.

    Raises :class:`CLIError` naming the file and the key that is missing or malformed.
    """
    def bad(key: str, want: str) -> CLIError:
        got = "missing" if key not in config else f"got {json.dumps(config[key])[:60]}"
        return CLIError(f"{path}: key {key!r} must be {want} ({got}); this is not a config.json written by "
                        "'train' (train the run again)")

    if not isinstance(config.get("dataset"), str) or config["dataset"] not in DATASETS:
        raise bad("dataset", f"one of {', '.join(DATASETS)}")
    if config.get("binarize", "absent") not in BINARIZE_OPTIONS:
        raise bad("binarize", "null, \"static\" or \"dynamic\"")
    if config.get("model") not in MODELS:
        raise bad("model", f"one of {', '.join(MODELS)}")
    if config.get("likelihood") not in LIKELIHOODS:
        raise bad("likelihood", f"one of {', '.join(LIKELIHOODS)}")
    if not _positive_int(config.get("latent_dim")):
        raise bad("latent_dim", "a positive integer")
    hidden = config.get("hidden")
    if not (isinstance(hidden, list) and hidden and all(_positive_int(h) for h in hidden)):
        raise bad("hidden", "a non-empty list of positive integers")
    shape = config.get("image_shape")
    expected = list(DATASETS[config["dataset"]].image_shape)
    if shape != expected:
        raise bad("image_shape", f"{expected}, the shape of {config['dataset']} images")
    if "training" in config and not isinstance(config["training"], dict):
        raise bad("training", "an object")
    return config


@contextlib.contextmanager
def _locked(folder: Path):
    """Hold an exclusive OS lock (``flock``) on ``folder`` while training writes to it."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; run folders are not locked there
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(f"{folder} is in use: another 'train' is writing to it right now; wait for it "
                                 "to finish or choose another --out") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def _write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (temporary file, then rename): never a half-written config.json."""
    atomic_write(path, lambda f: f.write(_json_bytes(data)), path.name)


def _config_digest(config: dict) -> str:
    return hashlib.sha256(_json_bytes(config)).hexdigest()


def _claim_run_folder(out: Path) -> bool:
    """Make sure ``train`` may write into ``out``; True if it is already a run folder.

    ``out`` must be new or empty, or hold the marker of a run folder written by ``train``
    (or, from before the marker existed, a ``config.json`` of this package's format and
    nothing but the files ``train``/``sample`` write). Anything else is the user's, and
    is refused before anything is written.
    """
    if (out / RUN_MARKER).is_file():
        return True
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return False
    ours = {CONFIG_FILE, CHECKPOINT_FILE, "samples.png"}
    legacy = set(entries) <= ours | {e for e in entries if e.startswith(CHECKPOINT_FILE + ".")} \
        and (out / CONFIG_FILE).is_file() and _is_our_config(out / CONFIG_FILE)
    if legacy:
        return True
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    raise CLIError(f"--out {out} already holds files that 'train' did not write ({shown}); it never "
                   "overwrites or deletes them: choose a new or empty folder for --out")


def _is_our_config(path: Path) -> bool:
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(config, dict) and config.get("format") == CONFIG_FORMAT and "vae_tutorial" in config


def _check_config_unchanged(run: Path, config: dict) -> None:
    """Refuse a ``config.json`` edited after ``train`` wrote it (the marker holds its digest)."""
    try:
        marker = json.loads((run / RUN_MARKER).read_text())
    except FileNotFoundError:
        return  # a run folder from before the marker: nothing recorded to compare with
    except (OSError, UnicodeDecodeError, ValueError):
        raise CLIError(f"{run / RUN_MARKER} is damaged; train the run again") from None
    if isinstance(marker, dict) and marker.get("config_sha256") not in (None, _config_digest(config)):
        raise CLIError(f"{run / CONFIG_FILE} was changed after training: its checkpoint was trained with the "
                       "settings 'train' wrote there (data set, binarisation, likelihood, architecture). "
                       "Restore them, or train a new run with the settings you want")


# ----------------------------------------------------------------------------- models and runs

def build_model(config: dict) -> VAE:
    """Rebuild the (untrained) :class:`~vae_tutorial.models.vae.VAE` that ``config`` describes.

    ``config`` holds ``model`` (``"mlp"`` or ``"conv"``), ``image_shape`` ``(C, H, W)``,
    ``latent_dim`` ``Z``, ``hidden`` (widths) and ``likelihood``, as written by ``train``.
    """
    try:
        kind, shape = config["model"], tuple(int(s) for s in config["image_shape"])
        latent, hidden, likelihood = int(config["latent_dim"]), [int(h) for h in config["hidden"]], config["likelihood"]
    except (KeyError, TypeError, ValueError) as e:
        raise CLIError(f"the run's {CONFIG_FILE} is incomplete or malformed ({type(e).__name__}: {e}); "
                       "train the run again") from None
    if latent < 1 or any(h < 1 for h in hidden):
        raise CLIError(f"latent dimension and hidden widths must be positive, got {latent} and {hidden}")
    if likelihood not in LIKELIHOODS:
        raise CLIError(f"unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)}")
    # a discretised logistic needs two numbers per pixel: locations, then log-scales
    out_channels = 2 * shape[0] if likelihood == "discretized_logistic" else shape[0]
    if kind == "mlp":
        return VAE(MLPEncoder(shape, hidden, latent), MLPDecoder(latent, hidden, (out_channels, *shape[1:])),
                   likelihood)
    if kind == "conv":
        if shape != (1, 28, 28):
            raise CLIError(f"the conv model needs 1x28x28 images, this data set has {'x'.join(map(str, shape))}; "
                           "use --model mlp, or a 28x28 data set (fashion-mnist, mnist, kmnist)")
        if len(hidden) != 1:
            raise CLIError(f"the conv model has one hidden linear layer: give one --hidden width, got {hidden}")
        return VAE(ConvEncoder(latent, hidden=hidden[0]),
                   ConvDecoder(latent, hidden=hidden[0], out_channels=out_channels), likelihood)
    raise CLIError(f"unknown model {kind!r}; choose one of {', '.join(MODELS)}")


def _read_config(run: Path) -> dict:
    if not run.is_dir():
        raise CLIError(f"no run folder at {run}; train one first: python -m vae_tutorial train --out {run}")
    path = run / CONFIG_FILE
    if not path.is_file():
        raise CLIError(f"{run} has no {CONFIG_FILE}, so it is not a run folder written by "
                       "'python -m vae_tutorial train'")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CLIError(f"{path} is not readable JSON ({e}); train the run again") from None
    if not isinstance(config, dict):
        raise CLIError(f"{path} should hold a JSON object, got {type(config).__name__}; train the run again")
    return validate_config(config, path)


def load_run(run: str | Path, device: torch.device | str = "cpu") -> tuple[VAE, dict]:
    """``(model, config)`` of a run folder: the model rebuilt from ``config.json``, its
    trained weights loaded from ``checkpoint.pt`` with ``weights_only=True``, in eval mode."""
    run = Path(run)
    config = _read_config(run)
    _check_config_unchanged(run, config)
    model = build_model(config)
    ckpt = run / CHECKPOINT_FILE
    if not ckpt.is_file():
        raise CLIError(f"{run} has no {CHECKPOINT_FILE}: its training did not finish an epoch; train it again")
    state = check_checkpoint(load_checkpoint(ckpt, map_location="cpu"), ckpt)  # names the file when unusable
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise CLIError(f"{ckpt} holds no model weights; train the run again")
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[:3]
        raise CLIError(f"{ckpt} does not fit the model described by {CONFIG_FILE} "
                       f"({' '.join(s.strip() for s in first)}); were the files of two runs mixed?") from None
    return model.to(device).eval(), config


def _device(name: str | None) -> torch.device:
    if name is None:
        return resolve_device(None)  # $VAE_TUTORIAL_DEVICE or the best available, checked
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise CLIError(f"--device {name!r} is not a device name ({e}); use e.g. cpu, cuda or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {name}: this PyTorch sees no CUDA GPU; use --device cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CLIError(f"--device {name}: Apple MPS is not available here; use --device cpu")
    return device


def _load_data(name: str, split: str, binarize: str | None):
    try:
        return load_dataset(name, split, binarize=binarize)
    except DatasetError as e:
        raise CLIError(str(e)) from None


# ----------------------------------------------------------------------------- commands

def _fmt(record: dict, epochs: int) -> str:
    line = (f"epoch {record['epoch']:>3}/{epochs}  train ELBO {record['train_elbo']:9.3f}  "
            f"reconstruction {record['train_reconstruction']:9.3f}  KL {record['train_kl']:7.3f}")
    if "valid_elbo" in record:
        line += f"  test ELBO {record['valid_elbo']:9.3f}"
    if "skipped_steps" in record:  # --skip-threshold
        line += f"  skipped {record['skipped_steps']} steps"
    return line + f"  ({record['seconds']:.1f} s)"


def _check_options(args, *names: str) -> None:
    """Range checks shared by the commands, before anything is read or written."""
    if "seed" in names:
        try:
            check_seed(args.seed, "--seed")
        except VAETutorialError as e:
            raise CLIError(f"{e} (0 ≤ --seed ≤ {SEED_MAX})") from None


def _check_out(out: str | None) -> None:
    if out is not None and not out.strip():
        raise CLIError("--out is empty (an unset shell variable?); name a folder, or leave --out out "
                       "for the default")


@distributed.fail_together  # under torchrun: one process's error stops them all
def cmd_train(args) -> int:
    # ---- everything is checked before the run folder is touched
    _check_options(args, "seed")
    _check_out(args.out)
    device = _device(args.device)
    hidden = args.hidden or DEFAULT_HIDDEN[args.model]
    binarize = None if args.binarize == "none" else args.binarize
    if args.epochs is None:
        args.epochs = DEFAULT_EPOCHS.get(args.dataset, DEFAULT_EPOCHS[None])
    if not (args.epochs >= 1 and args.batch_size >= 1 and args.lr > 0 and math.isfinite(args.lr)
            and args.beta >= 0 and math.isfinite(args.beta)):
        raise CLIError(f"need --epochs >= 1, --batch-size >= 1, --lr > 0 and --beta >= 0, all finite "
                       f"(got {args.epochs}, {args.batch_size}, {args.lr}, {args.beta})")
    if not (args.warmup >= 0 and math.isfinite(args.warmup)):
        raise CLIError(f"--warmup must be a finite number of epochs >= 0 (0: no warm-up), got {args.warmup}")
    for flag, value in (("--grad-clip", args.grad_clip), ("--skip-threshold", args.skip_threshold)):
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise CLIError(f"{flag} must be a finite gradient norm > 0 (leave it out for none), got {value}")
    if args.subset is not None and not 0 < args.subset:
        raise CLIError(f"--subset must be a positive number of images, got {args.subset}")
    if args.test_images is not None and args.test_images < 0:
        raise CLIError(f"--test-images must be >= 0, got {args.test_images}")
    train = _load_data(args.dataset, "train", binarize)
    if args.subset is not None:
        train = train.subset(min(args.subset, len(train)))
    test = _load_data(args.dataset, "test", binarize)
    if args.test_images is not None:
        test = test.subset(min(args.test_images, len(test))) if args.test_images else None
    config = {
        "format": CONFIG_FORMAT, "vae_tutorial": __version__,
        "dataset": train.name, "binarize": binarize, "image_shape": list(train.image_shape),
        "model": args.model, "latent_dim": args.latent_dim, "hidden": hidden, "likelihood": args.likelihood,
        "training": {"epochs": args.epochs, "beta": args.beta, "warmup": args.warmup, "batch_size": args.batch_size,
                     "lr": args.lr, "seed": args.seed, "train_images": len(train),
                     "grad_clip": args.grad_clip, "skip_threshold": args.skip_threshold},
    }
    torch.manual_seed(args.seed)  # the initial weights
    model = build_model(config)  # refuses sizes that do not fit in memory before allocating them

    out = Path(args.out if args.out is not None else f"runs/{train.name}-{args.model}")
    ckpt = out / CHECKPOINT_FILE
    if not distributed.world().is_main:  # under torchrun: rank 0 owns the run folder and prints
        return _train_follower(args, ckpt, model, train, test, device)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file, not a folder; choose another --out")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"cannot create the run folder {out} ({e.strerror or e}); choose another --out") from None
    try:
        with _locked(out):
            was_run = _claim_run_folder(out) if not created else False
            try:
                return _train_locked(args, out, ckpt, config, model, train, test, device)
            finally:
                if not ckpt.exists() and not was_run:
                    # no epoch finished in a folder this command claimed: take back what it wrote
                    for name in (CONFIG_FILE, RUN_MARKER):
                        (out / name).unlink(missing_ok=True)
                    if created:
                        with contextlib.suppress(OSError):
                            out.rmdir()
    except RunLockedError:
        if created:  # we made the folder a moment after the other run: leave its contents alone
            with contextlib.suppress(OSError):
                out.rmdir()
        raise


def _train_locked(args, out: Path, ckpt: Path, config: dict, model, train, test, device) -> int:
    clean_stale_temporaries(ckpt, min_age=0)  # we hold the lock: any temporary is a killed run's
    if ckpt.exists() and args.fresh:
        ckpt.unlink()
    done = 0
    if ckpt.exists():
        old = _read_config(out)
        old_training = old.get("training") if isinstance(old.get("training"), dict) else {}
        changed = [k for k in ARCHITECTURE_KEYS if old.get(k) != config[k]]
        changed += [f"--{k.replace('_', '-')}" for k in ("batch_size", "lr", "seed", "beta", "warmup",
                                                          "grad_clip", "skip_threshold")
                    if old_training.get(k) != config["training"][k]]
        if old_training.get("train_images") != len(train):
            changed.append("number of training images")
        if changed:
            raise CLIError(f"{out} already holds a run with a different {', '.join(changed)}; "
                           "pass --fresh to overwrite it or choose another --out")
        done = int(check_checkpoint(load_checkpoint(ckpt), ckpt)["epoch"])
        print(f"resuming the run in {out} after epoch {done} (pass --fresh to start again)")
    _write_json(out / CONFIG_FILE, config)
    _write_json(out / RUN_MARKER, {"written_by": "python -m vae_tutorial train", "vae_tutorial": __version__,
                                   "config_sha256": _config_digest(config)})
    world = distributed.world()
    distributed.agree(world, done)  # under torchrun: the run folder is ready; the others start

    n_params = sum(p.numel() for p in model.parameters())
    print(f"training a {args.model} VAE ({n_params:,} parameters, latent {args.latent_dim}, {args.likelihood}) "
          f"on {len(train)} {train.name} images, device {device}"
          + (f", {world.size} processes (global batch {args.batch_size})" if world.active else ""))
    beta = _beta(args)
    if done >= args.epochs:
        print(f"nothing to do: the run in {out} has already been trained for {done} epochs "
              f"(ask for more with --epochs)")
    t0 = time.perf_counter()
    for epoch in range(done + 1, args.epochs + 1):
        # One epoch per call: fit resumes from the checkpoint it wrote, so the numbers
        # are the same as one call with all the epochs, and we can print as we go.
        history = fit(model, train, epochs=epoch, batch_size=args.batch_size, lr=args.lr, beta=beta,
                      valid=test, device=device, seed=args.seed, progress=sys.stderr.isatty(), checkpoint=ckpt,
                      grad_clip=args.grad_clip, skip_threshold=args.skip_threshold)
        print(_fmt(history.records[-1], args.epochs), flush=True)
    print(f"saved {out / CHECKPOINT_FILE} and {out / CONFIG_FILE} ({time.perf_counter() - t0:.1f} s)\n"
          f"next: python -m vae_tutorial evaluate --run {out}")
    return 0


def _beta(args):
    return linear_warmup(args.warmup, args.beta) if args.warmup > 0 else args.beta


def _train_follower(args, ckpt: Path, model, train, test, device) -> int:
    """``train`` in a process of rank > 0 under torchrun: the epochs rank 0 says, silently."""
    done = distributed.agree(distributed.world())[0]  # rank 0's epochs so far, once its folder is ready
    for epoch in range(done + 1, args.epochs + 1):
        fit(model, train, epochs=epoch, batch_size=args.batch_size, lr=args.lr, beta=_beta(args),
            valid=test, device=device, seed=args.seed, progress=False, checkpoint=ckpt,
            grad_clip=args.grad_clip, skip_threshold=args.skip_threshold)
    return 0


def cmd_evaluate(args) -> int:
    _check_options(args, "seed")
    if args.k < 1:
        raise CLIError(f"--k must be at least 1 importance sample, got {args.k}")
    if args.max_examples is not None and args.max_examples < 1:
        raise CLIError(f"--max-examples must be positive, got {args.max_examples}")
    device = _device(args.device)
    model, config = load_run(args.run, device)
    data = _load_data(config["dataset"], args.split, config.get("binarize"))
    r = evaluate_model(model, data, k=args.k, device=device, seed=args.seed, max_examples=args.max_examples)
    if args.json:
        print(json.dumps(r, indent=2, allow_nan=False))  # strict JSON (evaluate_model refuses NaN weights)
        return 0
    print(f"{config['dataset']} {args.split} set, {r['n']} images of {r['dims']} pixels; run {args.run}")
    print(f"ELBO                     {r['elbo']:10.3f} nats  (reconstruction {r['reconstruction']:.3f}, "
          f"KL {r['kl']:.3f})")
    print(f"NLL, IWAE k={r['k']:<6}      {r['nll']:10.3f} nats  = {r['bits_per_dim']:.4f} bits/dim")
    units = "n/a" if r["active_units"] is None else r["active_units"]  # None: one image has no variance
    print(f"active units             {units:>10} of {model.latent_dim}")
    print(f"reconstruction error     {r['recon_error']:10.3f}  (squared error summed over pixels, per image)")
    return 0


def _write_png(path: Path, grid, scale: int) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    if scale > 1:
        grid = np.kron(grid, np.ones((scale, scale), dtype=grid.dtype))
    png = io.BytesIO()  # drawn in memory first: a failed write never destroys the previous PNG
    plt.imsave(png, grid, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    atomic_write(path, lambda f: f.write(png.getvalue()), "PNG")


def cmd_sample(args) -> int:
    from .display.plots import image_grid

    _check_options(args, "seed")
    if args.n < 1 or (args.nrow is not None and args.nrow < 1):
        raise CLIError(f"--n and --nrow must be positive, got {args.n} and {args.nrow}")
    if args.n > MAX_SAMPLES:
        raise CLIError(f"--n {args.n} is more samples than one PNG grid can show; use --n <= {MAX_SAMPLES:,}")
    if args.scale is not None and args.scale < 1:
        raise CLIError(f"--scale must be a positive integer, got {args.scale}")
    _check_out(args.out)
    out = Path(args.out) if args.out is not None else Path(args.run) / "samples.png"
    if out.suffix.lower() != ".png":
        raise CLIError(f"--out must name a .png file, got {out}")
    device = _device(args.device)
    model, config = load_run(args.run, device)
    _, height, width = (int(v) for v in config["image_shape"])
    scale = args.scale if args.scale is not None else max(1, 28 // height)
    nrow = args.nrow or math.ceil(math.sqrt(args.n))
    cols = min(nrow, args.n)
    rows = math.ceil(args.n / cols)
    pixels = (rows * (height + 1) - 1) * (cols * (width + 1) - 1) * scale * scale
    if pixels > MAX_PNG_PIXELS:
        raise CLIError(f"the PNG would have {pixels:,} pixels (--n {args.n}, --scale {scale}); "
                       f"the limit is {MAX_PNG_PIXELS:,}: lower --scale or --n")
    generator = torch.Generator(device).manual_seed(args.seed)
    images = model.sample(args.n, generator)
    _write_png(out, image_grid(images, nrow=nrow), scale)
    print(f"wrote {args.n} samples from p(z) = N(0, I) to {out}")
    return 0


# ----------------------------------------------------------------------------- argument parsing

def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    prog = "vae-tutorial" if Path(sys.argv[0]).name == "vae-tutorial" else "python -m vae_tutorial"
    p = argparse.ArgumentParser(prog=prog, formatter_class=fmt, epilog=EPILOG,
                                description="Train, evaluate and sample variational autoencoders "
                                            "(the vae_tutorial package of the book 'Variational Autoencoders, "
                                            "Correctly').")
    p.add_argument("--version", action="version", version=f"vae_tutorial {__version__}")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command", metavar="{train,evaluate,sample}")

    t = sub.add_parser("train", formatter_class=fmt, help="train a VAE and save a run folder",
                       description="Train a VAE by maximising the ELBO with Adam; writes <out>/checkpoint.pt and "
                                   "<out>/config.json. Running it again on the same --out resumes the run.",
                       epilog="examples:\n  python -m vae_tutorial train\n"
                              "  python -m vae_tutorial train --dataset fashion-mnist --epochs 10\n"
                              "  python -m vae_tutorial train --dataset mnist --model conv --binarize dynamic")
    t.add_argument("--dataset", default="digits", choices=list(DATASETS),
                   help="data set (default digits: scikit-learn's 8x8 digits, always offline)")
    t.add_argument("--model", default="mlp", choices=MODELS, help="encoder/decoder kind (conv needs 28x28 images)")
    t.add_argument("--latent-dim", type=int, default=20, help="Z, the dimension of z (default 20)")
    t.add_argument("--hidden", type=int, nargs="+", default=None,
                   help="hidden layer widths (default 400 for mlp, as pytorch/examples; 256 for conv)")
    t.add_argument("--likelihood", default="bernoulli", choices=LIKELIHOODS, help="p_θ(x|z) (default bernoulli)")
    t.add_argument("--epochs", type=int, default=None,
                   help=f"epochs (default {DEFAULT_EPOCHS['digits']} for the 1 500 digits, {DEFAULT_EPOCHS[None]} otherwise)")
    t.add_argument("--beta", type=float, default=1.0, help="KL weight β (default 1: the ELBO)")
    t.add_argument("--warmup", type=float, default=0.0, help="KL warm-up: β rises linearly over this many epochs")
    t.add_argument("--batch-size", type=int, default=128, help="mini-batch size (default 128)")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    t.add_argument("--grad-clip", type=float, default=None,
                   help="clip the gradient's norm to this value (default: no clipping)")
    t.add_argument("--skip-threshold", type=float, default=None,
                   help="skip an update whose gradient norm exceeds this value, as VDVAE does (default: never)")
    t.add_argument("--binarize", default="none", choices=[str(b).lower() for b in BINARIZE_OPTIONS],
                   help="none (grey levels), static (one fixed 0/1 sample) or dynamic (resampled each epoch)")
    t.add_argument("--subset", type=int, default=None, help="train on the first N training images only")
    t.add_argument("--test-images", type=int, default=None,
                   help="test images whose ELBO is printed each epoch (default all; 0 turns it off)")
    t.add_argument("--seed", type=int, default=0, help="seed of the weights, shuffling and noise (default 0)")
    t.add_argument("--out", default=None, help="run folder (default runs/<dataset>-<model>)")
    t.add_argument("--fresh", action="store_true", help="discard an existing checkpoint in --out instead of resuming")
    t.add_argument("--device", default=None, help="cpu, cuda, mps... (default: the best available)")
    t.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the full traceback of an error")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", formatter_class=fmt, help="test ELBO, IWAE NLL, bits/dim, active units",
                       description="Evaluate a trained run on its data set's test split: ELBO, the IWAE estimate of "
                                   "-log p(x) with k importance samples (nats and bits/dim), active units and "
                                   "reconstruction error.",
                       epilog="example:\n  python -m vae_tutorial evaluate --run runs/digits-mlp --k 1000\n"
                              "On a CPU, k=1000 on the 10 000 Fashion-MNIST test images takes minutes: "
                              "try --k 100 or --max-examples 1000 first.")
    e.add_argument("--run", required=True, help="run folder written by 'train'")
    e.add_argument("--k", type=int, default=1000, help="importance samples of the IWAE bound (default 1000)")
    e.add_argument("--split", default="test", choices=["train", "test"], help="split to evaluate (default test)")
    e.add_argument("--max-examples", type=int, default=None, help="evaluate the first N images only")
    e.add_argument("--seed", type=int, default=0, help="seed of the importance samples (default 0)")
    e.add_argument("--json", action="store_true", help="print the numbers as JSON")
    e.add_argument("--device", default=None, help="cpu, cuda, mps... (default: the best available)")
    e.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the full traceback of an error")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("sample", formatter_class=fmt, help="write a PNG grid of samples from the prior",
                       description="Decode z ~ p(z) = N(0, I) and save the means of p(x|z) as a PNG grid.",
                       epilog="example:\n  python -m vae_tutorial sample --run runs/digits-mlp --n 64 --out samples.png")
    s.add_argument("--run", required=True, help="run folder written by 'train'")
    s.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    s.add_argument("--nrow", type=int, default=None, help="images per row (default ⌈√n⌉)")
    s.add_argument("--scale", type=int, default=None,
                   help="enlarge each pixel to scale×scale (default 1 for 28x28 images, 3 for 8x8 digits)")
    s.add_argument("--out", default=None, help="PNG file (default <run>/samples.png)")
    s.add_argument("--seed", type=int, default=0, help="seed of z (default 0)")
    s.add_argument("--device", default=None, help="cpu, cuda, mps... (default: the best available)")
    s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the full traceback of an error")
    s.set_defaults(func=cmd_sample)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    previous = _stop_on_sigterm()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = _user_error(e)
        if message is None or getattr(args, "debug", False):
            raise  # a bug (or --debug): the full traceback
        # one write of the whole line: print() writes the text and the newline separately, and
        # under torchrun the processes share one stderr, where two such lines could interleave
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _sigterm(signum, frame):
    raise KeyboardInterrupt  # the same clean stop as Ctrl-C: checkpoints stay whole, our files are tidied


def _stop_on_sigterm():
    """Handle SIGTERM (``kill``, a job scheduler, a closing container) like Ctrl-C; the old handler."""
    try:
        return signal.signal(signal.SIGTERM, _sigterm)
    except (ValueError, AttributeError):  # not the main thread, or no SIGTERM on this platform
        return None


def _user_error(e: BaseException) -> str | None:
    """The one-line message of an error the user can fix, or ``None`` for a bug."""
    if isinstance(e, (VAETutorialError, DatasetError, NonFiniteLossError, ValueError, TypeError, OSError)):
        return str(e) or type(e).__name__
    if isinstance(e, MemoryError) or isinstance(e, getattr(torch, "OutOfMemoryError", MemoryError)) or (
            isinstance(e, RuntimeError) and "alloc" in str(e).lower()):
        first = (str(e).strip().splitlines() or [""])[0][:200]
        return f"out of memory ({first}); use smaller --hidden, --latent-dim, --batch-size or --n"
    return None


if __name__ == "__main__":
    sys.exit(main())
