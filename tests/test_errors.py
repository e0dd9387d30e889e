"""Every bad input to the library gets a clear, documented error (issue 11): nothing silent.

One test per case of the red-team list, parametrised where natural. The command line has its
own file (test_cli_errors.py), data provenance and downloads theirs (test_data_provenance.py).
"""
from __future__ import annotations

import math
import os
import time

import pytest
import torch

import vae_tutorial as vt
from vae_tutorial import cli, errors
from vae_tutorial.errors import (
    ArgumentError,
    ArgumentTypeError,
    CheckpointError,
    DataError,
    DeviceError,
    ResumeMismatchError,
    VAETutorialError,
)
from vae_tutorial.training.train import load_checkpoint, save_checkpoint

FIT = dict(progress=False, device="cpu")


@pytest.fixture(scope="module")
def small():
    return vt.load_dataset("digits", "train").subset(128)


def mlp_vae(z: int = 2, likelihood: str = "bernoulli", seed: int = 0) -> vt.VAE:
    torch.manual_seed(seed)
    return vt.VAE(vt.MLPEncoder((1, 8, 8), [16], z), vt.MLPDecoder(z, [16], (1, 8, 8)), likelihood)


# ----------------------------------------------------------------------------- the error classes

@pytest.mark.parametrize("cls, builtin", [
    (ArgumentError, ValueError), (ArgumentTypeError, TypeError), (DataError, ValueError),
    (CheckpointError, ValueError), (ResumeMismatchError, ValueError), (DeviceError, ValueError),
    (vt.data.DatasetError, ValueError), (vt.train.NonFiniteLossError, FloatingPointError),
    (cli.CLIError, Exception),
])
def test_documented_errors_share_one_base_and_keep_the_builtin_one(cls, builtin):
    assert issubclass(cls, VAETutorialError) and issubclass(cls, builtin)
    assert errors.DOCUMENTED_ERRORS == (VAETutorialError,)


# ----------------------------------------------------------------------------- pixel range and data

@pytest.mark.parametrize("transform, what", [
    (lambda x: x * 255, "0..255"),
    (lambda x: 2 * x - 1, "[-1, 1]"),
])
@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli"])
def test_fit_and_evaluate_refuse_pixels_outside_what_the_likelihood_needs(small, transform, what, likelihood):
    bad = transform(small.images)
    with pytest.raises(DataError, match=rf"{likelihood} decoder needs data in \[0, 1\]"):
        vt.fit(mlp_vae(likelihood=likelihood), bad, epochs=1, **FIT)
    with pytest.raises(DataError, match="needs data in"):
        vt.evaluate_model(mlp_vae(likelihood=likelihood), bad, k=2, device="cpu")


def test_a_gaussian_decoder_accepts_real_valued_data(small):
    h = vt.fit(mlp_vae(likelihood="gaussian"), 2 * small.images - 1, epochs=1, batch_size=64, **FIT)
    assert math.isfinite(h["train_elbo"][0])


@pytest.mark.parametrize("fn", [vt.bernoulli_log_likelihood, vt.continuous_bernoulli_log_likelihood])
@pytest.mark.parametrize("value", [255.0, -0.5, float("nan")])
def test_bernoulli_likelihoods_refuse_x_outside_the_unit_interval(fn, value):
    logits = torch.zeros(2, 4)
    x = torch.full((2, 4), 0.5)
    x[1, 2] = value
    with pytest.raises(DataError, match=r"needs data x in \[0, 1\]"):
        fn(logits, x)
    assert torch.isfinite(fn(logits, torch.rand(2, 4))).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_pixels_are_refused_with_the_example_named(small, bad):
    images = small.images.clone()
    images[5, 0, 1, 1] = bad
    with pytest.raises(DataError, match=r"NaN or infinite pixels \(first in example 5\)"):
        vt.fit(mlp_vae(likelihood="gaussian"), images, epochs=1, **FIT)


def test_nan_in_the_validation_set_is_refused_before_training(small):
    valid = small.images[:32].clone()
    valid[3, 0, 0, 0] = float("nan")
    model = mlp_vae()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(DataError, match="validation data holds NaN"):
        vt.fit(model, small, epochs=1, valid=valid, **FIT)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # not one step taken


def test_empty_data_sets_are_refused(small, tmp_path):
    empty = small.images[:0]
    ckpt = tmp_path / "run.pt"
    with pytest.raises(DataError, match="empty"):
        vt.fit(mlp_vae(), empty, epochs=1, checkpoint=ckpt, **FIT)
    assert not ckpt.exists()  # nothing saved
    with pytest.raises(DataError, match="empty"):
        vt.evaluate_model(mlp_vae(), empty, k=2, device="cpu")
    with pytest.raises(DataError, match="empty"):
        vt.fit(mlp_vae(), [], epochs=1, **FIT)


@pytest.mark.parametrize("kwargs, name", [
    ({"max_examples": 0}, "max_examples"), ({"batch_size": 0}, "batch_size"), ({"k": 0}, "k"),
    ({"k": 2.5}, "k"), ({"seed": -1}, "seed"), ({"max_examples": -3}, "max_examples"),
])
def test_evaluate_model_names_the_bad_argument(small, kwargs, name):
    with pytest.raises((ArgumentError, ArgumentTypeError), match=rf"^{name} must be"):
        vt.evaluate_model(mlp_vae(), small, device="cpu", **{"k": 2, **kwargs})


def test_evaluating_one_image_reports_no_active_unit_count_rather_than_zero(small):
    r = vt.evaluate_model(mlp_vae(), small, k=3, max_examples=1, device="cpu")
    assert r["n"] == 1 and r["active_units"] is None
    assert all(math.isfinite(r[key]) for key in ("elbo", "nll", "bits_per_dim", "recon_error"))
    with pytest.raises(DataError, match="at least 2 examples"):
        vt.evaluate.active_units(mlp_vae(), small.images[:1])
    assert vt.evaluate_model(mlp_vae(), small, k=2, max_examples=2, device="cpu")["active_units"] >= 0


def test_conditional_labels_out_of_range_are_refused(small):
    torch.manual_seed(0)
    model = vt.ConditionalVAE(vt.MLPEncoder(64 + 10, [16], 2), vt.MLPDecoder(2 + 10, [16], (1, 8, 8)),
                              num_classes=10)
    labels = small.labels.clone()
    labels[4] = 10
    data = torch.utils.data.TensorDataset(small.images, labels)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 10\).*from 0 to 10"):
        vt.fit(model, data, epochs=1, **FIT)
    with pytest.raises(DataError, match="needs a data set with labels"):
        vt.fit(model, small.images, epochs=1, **FIT)


@pytest.mark.parametrize("fn", [
    lambda m, x: vt.elbo(m, x),
    lambda m, x: vt.iwae_bound(m, x, 3),
    lambda m, x: vt.estimate_log_likelihood(m, x, 3),
])
def test_elbo_and_iwae_on_an_empty_batch(fn):
    with pytest.raises(DataError, match="non-empty batch"):
        fn(mlp_vae(), torch.zeros(0, 1, 8, 8))


# ----------------------------------------------------------------------------- models

MODEL_BUILDERS = {
    "MLPEncoder": lambda z, h: vt.MLPEncoder((1, 8, 8), h, z),
    "MLPDecoder": lambda z, h: vt.MLPDecoder(z, h, (1, 8, 8)),
    "ConvEncoder": lambda z, h: vt.ConvEncoder(z, hidden=h[0]),
    "ConvDecoder": lambda z, h: vt.ConvDecoder(z, hidden=h[0]),
}


@pytest.mark.parametrize("builder", MODEL_BUILDERS)
@pytest.mark.parametrize("z, hidden, error, name", [
    (0, [8], ArgumentError, "latent_dim"),
    (-2, [8], ArgumentError, "latent_dim"),
    (2.5, [8], ArgumentTypeError, "latent_dim"),
    ("3", [8], ArgumentTypeError, "latent_dim"),
    (2, [0], ArgumentError, "hidden"),
    (2, [-4], ArgumentError, "hidden"),
    (2, [8.5], ArgumentTypeError, "hidden"),
])
def test_model_constructors_name_the_bad_size(builder, z, hidden, error, name):
    with pytest.raises(error, match=rf"^{name}(\[0\])? must be"):
        MODEL_BUILDERS[builder](z, hidden)


def test_huge_layers_are_refused_before_allocating():
    t0 = time.perf_counter()
    with pytest.raises(ArgumentError, match="would need .* GiB to train: .* parameters .* more than this machine's memory"):
        vt.MLPEncoder((1, 28, 28), [100_000, 100_000], 20)
    with pytest.raises(ArgumentError, match="parameters"):
        vt.ConvEncoder(20, hidden=10**9)
    assert time.perf_counter() - t0 < 5


def test_vae_parts_must_be_modules_and_num_classes_positive():
    with pytest.raises(ArgumentTypeError, match="encoder must be a torch.nn.Module"):
        vt.VAE(lambda x: x, vt.MLPDecoder(2, [4], 4))
    with pytest.raises(ArgumentError, match="num_classes"):
        vt.ConditionalVAE(vt.MLPEncoder(4, [4], 2), vt.MLPDecoder(2, [4], 4), num_classes=0)
    with pytest.raises(ArgumentError, match="gaussian_logvar must be finite"):
        vt.VAE(vt.MLPEncoder(4, [4], 2), vt.MLPDecoder(2, [4], 4), "gaussian", gaussian_logvar=float("nan"))


@pytest.mark.parametrize("model", [torch.nn.Identity(), torch.nn.Linear(3, 3), "not a model"])
def test_fit_refuses_something_that_is_not_a_vae(small, model):
    with pytest.raises(ArgumentTypeError, match="model"):
        vt.fit(model, small, epochs=1, **FIT)


# ----------------------------------------------------------------------------- hyperparameters

@pytest.mark.parametrize("kwargs, error, name", [
    ({"epochs": 2.5}, ArgumentTypeError, "epochs"),
    ({"epochs": -1}, ArgumentError, "epochs"),
    ({"batch_size": 0}, ArgumentError, "batch_size"),
    ({"batch_size": 1.5}, ArgumentTypeError, "batch_size"),
    ({"lr": float("nan")}, ArgumentError, "lr"),
    ({"lr": 0.0}, ArgumentError, "lr"),
    ({"lr": -1e-3}, ArgumentError, "lr"),
    ({"beta": float("nan")}, ArgumentError, "beta"),
    ({"beta": -1.0}, ArgumentError, "beta"),
    ({"beta": float("inf")}, ArgumentError, "beta"),
    ({"free_bits": float("nan")}, ArgumentError, "free_bits"),
    ({"free_bits": -0.5}, ArgumentError, "free_bits"),
    ({"seed": -1}, ArgumentError, "seed"),
    ({"seed": 2**70}, ArgumentError, "seed"),
    ({"seed": 1.0}, ArgumentTypeError, "seed"),
    ({"iwae_k": 0, "objective": "iwae"}, ArgumentError, "iwae_k"),
    ({"objective": "elbow"}, ArgumentError, "objective"),
])
def test_fit_names_the_bad_hyperparameter(small, kwargs, error, name):
    with pytest.raises(error, match=rf"^{name} must be"):
        vt.fit(mlp_vae(), small, **{"epochs": 1, **FIT, **kwargs})


@pytest.mark.parametrize("epochs", [float("nan"), -5, 0, float("inf")])
def test_linear_warmup_refuses_a_bad_length(epochs):
    with pytest.raises(ArgumentError, match="warm-up length"):
        vt.linear_warmup(epochs)


def test_linear_warmup_refuses_a_bad_beta_and_fit_a_bad_schedule(small):
    with pytest.raises(ArgumentError, match="beta"):
        vt.linear_warmup(2, beta=float("nan"))
    with pytest.raises(ArgumentError, match="β schedule gave nan"):
        vt.fit(mlp_vae(), small, epochs=1, beta=lambda t: float("nan"), **FIT)
    with pytest.raises(ArgumentError, match="β schedule gave -1"):
        vt.fit(mlp_vae(), small, epochs=1, batch_size=32, beta=lambda t: 1.0 if t < 0.5 else -1.0, **FIT)


def test_seed_everything_and_devices(monkeypatch):
    with pytest.raises(ArgumentError, match="seed"):
        vt.seed_everything(2**70)
    with pytest.raises(DeviceError, match="not a device name"):
        vt.fit(mlp_vae(), torch.rand(4, 1, 8, 8), epochs=1, progress=False, device="gpu7")
    if not torch.cuda.is_available():
        monkeypatch.setenv("VAE_TUTORIAL_DEVICE", "cuda")
        with pytest.raises(DeviceError, match="VAE_TUTORIAL_DEVICE=cuda: this PyTorch sees no CUDA GPU"):
            vt.get_device()
        with pytest.raises(DeviceError, match="device=cuda"):
            vt.fit(mlp_vae(), torch.rand(4, 1, 8, 8), epochs=1, progress=False, device="cuda")


# ----------------------------------------------------------------------------- checkpoints

def flip_a_weight_byte(path, tensor: torch.Tensor) -> None:
    """Flip one byte inside the stored bytes of ``tensor`` (the zip holds them uncompressed)."""
    blob = bytearray(path.read_bytes())
    raw = tensor.detach().contiguous().numpy().tobytes()
    at = blob.find(raw[:64])
    assert at > 0, "the tensor's bytes were not found in the file"
    blob[at + 33] ^= 0x10
    path.write_bytes(bytes(blob))


def test_a_flipped_byte_in_a_checkpoint_is_refused(small, tmp_path):
    ckpt = tmp_path / "run.pt"
    model = mlp_vae()
    vt.fit(model, small, epochs=1, batch_size=64, checkpoint=ckpt, **FIT)
    weight = load_checkpoint(ckpt)["model"]["encoder.net.0.weight"]
    flip_a_weight_byte(ckpt, weight)
    with pytest.raises(CheckpointError, match="damaged|not a readable"):
        load_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match="damaged|not a readable"):
        vt.fit(mlp_vae(), small, epochs=2, batch_size=64, checkpoint=ckpt, **FIT)


@pytest.mark.parametrize("state, match", [
    ({"epoch": 3}, "no 'model', 'optimizer'"),
    ([1, 2, 3], "holds a list"),
    ("weights", "holds a str"),
])
def test_incomplete_checkpoints_are_refused(small, tmp_path, state, match):
    ckpt = tmp_path / "run.pt"
    torch.save(state, ckpt)
    with pytest.raises(CheckpointError, match=match):
        vt.fit(mlp_vae(), small, epochs=3, checkpoint=ckpt, **FIT)


def test_a_checkpoint_missing_its_optimizer_is_refused(small, tmp_path):
    ckpt = tmp_path / "run.pt"
    vt.fit(mlp_vae(), small, epochs=1, batch_size=64, checkpoint=ckpt, **FIT)
    state = load_checkpoint(ckpt)
    del state["optimizer"]
    save_checkpoint(ckpt, state)  # a valid digest, but not a complete checkpoint
    with pytest.raises(CheckpointError, match="no 'optimizer'"):
        vt.fit(mlp_vae(), small, epochs=2, batch_size=64, checkpoint=ckpt, **FIT)


@pytest.mark.parametrize("first, second, what", [
    ({"beta": 1.0}, {"beta": 0.5}, "beta=1.0"),
    ({"free_bits": 0.0}, {"free_bits": 0.25}, "free_bits=0.0"),
    ({"beta": vt.linear_warmup(2)}, {"beta": vt.linear_warmup(4)}, "schedule that differs"),
    ({"beta": 1.0}, {"beta": vt.linear_warmup(2)}, "beta=1.0"),
    ({"objective": "elbo"}, {"objective": "iwae"}, "objective='elbo'"),
])
def test_resuming_with_another_meaning_of_training_is_refused(small, tmp_path, first, second, what):
    ckpt = tmp_path / "run.pt"
    vt.fit(mlp_vae(), small, epochs=1, batch_size=64, checkpoint=ckpt, **FIT, **first)
    before = ckpt.read_bytes()
    with pytest.raises(ResumeMismatchError, match=what):
        vt.fit(mlp_vae(), small, epochs=2, batch_size=64, checkpoint=ckpt, **FIT, **second)
    assert ckpt.read_bytes() == before
    vt.fit(mlp_vae(), small, epochs=2, batch_size=64, checkpoint=ckpt, **FIT, **first)  # same: resumes


def test_resuming_on_other_images_with_the_same_count_is_refused(small, tmp_path):
    ckpt = tmp_path / "run.pt"
    vt.fit(mlp_vae(), small, epochs=1, batch_size=64, checkpoint=ckpt, **FIT)
    other = vt.load_dataset("digits", "train").subset(range(128, 256))
    with pytest.raises(ResumeMismatchError, match="training images="):
        vt.fit(mlp_vae(), other, epochs=2, batch_size=64, checkpoint=ckpt, **FIT)
    likelihood = mlp_vae(likelihood="continuous_bernoulli")
    with pytest.raises(ResumeMismatchError, match="likelihood='bernoulli'"):
        vt.fit(likelihood, small, epochs=2, batch_size=64, checkpoint=ckpt, **FIT)


def test_stale_temporary_checkpoints_are_cleaned_on_the_next_run(small, tmp_path):
    ckpt = tmp_path / "run.pt"
    stale = tmp_path / "run.pt.abc123.tmp"
    fresh = tmp_path / "run.pt.def456.tmp"  # as if another process were saving right now
    stale.write_bytes(b"half a checkpoint")
    fresh.write_bytes(b"being written")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    vt.fit(mlp_vae(), small, epochs=1, batch_size=64, checkpoint=ckpt, **FIT)
    assert not stale.exists() and fresh.exists() and ckpt.exists()


def test_the_data_check_runs_once_per_data_tensor_not_per_call(small, monkeypatch):
    calls = []
    real = vt.data.check_data
    monkeypatch.setattr(vt.data, "check_data", lambda *a, **k: (calls.append(1), real(*a, **k)))
    images = small.images.clone()
    for _ in range(3):
        vt.fit(mlp_vae(), images, epochs=1, batch_size=64, **FIT)
    assert len(calls) == 1
    images[0, 0, 0, 0] = 7.0  # an in-place change bumps the tensor's version: checked again
    with pytest.raises(DataError):
        vt.fit(mlp_vae(), images, epochs=1, batch_size=64, **FIT)
