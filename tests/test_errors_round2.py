"""Second red-team round (issue 21, ../shared/reviews/redteam-2026-12-07.md): memory guards on
every constructor, Part III included (root cause 5), and the cases H08, H33–H36, K12 and K26.

Every model constructor counts what it is about to allocate and asks one guard,
``vae_tutorial.errors.check_memory``, before allocating it. The guard's limit is the smallest of
the machine's memory, a container's limit and the process's own (``ulimit -v``); the message
names the size and the argument to change. The red team's cases ran under ``ulimit -v 3 GB``;
one subprocess reproduces them under that limit.
"""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vae_tutorial as vt
from vae_tutorial import autoregressive, diffusion, errors, hierarchical
from vae_tutorial.models.autoregressive import MaskedConv2d, PixelCNNDecoder, causal_mask
from vae_tutorial.models.diffusion import DiffusionModel, log_snr_schedule
from vae_tutorial.errors import ArgumentError, ResumeMismatchError, VAETutorialError
from vae_tutorial.training.files import FileWriteError, atomic_write, check_writable
from vae_tutorial.models.hierarchical import HierarchicalVAE, _ConvDecoder, _ConvTrunk

SMALL = (1, 8, 8)


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _counted(message: str) -> int:
    """The parameter count a memory refusal states ("… 1,312 parameters × 16 bytes …")."""
    return int(re.search(r"([\d,]+) parameters", message).group(1).replace(",", ""))


@pytest.fixture
def limit(monkeypatch):
    """``limit(n)``: pretend this process may allocate ``n`` bytes."""
    def set_limit(n: int):
        monkeypatch.setattr(errors, "memory_limit", lambda: (n, "a test limit"))
    return set_limit


# ----------------------------------------------------------------------------- root cause 5

# builder, the module whose size the first refusal states, the arguments the message names
PART_III = {
    "HierarchicalVAE.mlp": (lambda: HierarchicalVAE.mlp((4, 2), (16, 8), in_features=SMALL),
                            lambda m: m.trunk, ["hidden"]),
    "HierarchicalVAE.conv": (lambda: HierarchicalVAE.conv((4, 2), (16, 8), channels=(3, 5)),
                             lambda m: m.trunk, ["channels", "hidden[0]"]),
    "PixelCNNDecoder": (lambda: PixelCNNDecoder(3, (1, 9, 11), channels=6, layers=2, z_hidden=10),
                        lambda m: m, ["channels", "layers", "kernel_size", "z_hidden"]),
    # (the 5×5 mask itself, 100 bytes, is let through: its own guard is tested below)
    "MaskedConv2d": (lambda: MaskedConv2d(3, 7, 5, "B"), lambda m: m, ["channels"]),
    "DiffusionModel": (lambda: DiffusionModel(SMALL, steps=7, hidden=9, time_features=3),
                       lambda m: m, ["hidden"]),
}


@pytest.mark.parametrize("name", PART_III)
def test_every_part_iii_constructor_counts_what_it_builds_and_refuses_what_cannot_fit(name, limit):
    build, counted_part, arguments = PART_III[name]
    model = build()  # fits: the real limit is this machine's memory
    limit(100)
    with pytest.raises(ArgumentError, match=r"would need .* GiB to train: .* more than a test limit") as e:
        build()
    message = str(e.value)
    assert _counted(message) == _params(counted_part(model))  # the size named is what would be built
    assert all(a in message for a in arguments), message


@pytest.mark.parametrize("name", PART_III)
def test_a_model_at_the_limit_is_built(name, limit, monkeypatch):
    """The guard refuses only what does not fit: given exactly the bytes it asks for, it builds."""
    build = PART_III[name][0]
    _, calls = _guarded(build, monkeypatch)
    asked = [16 * parameters + buffers for parameters, buffers in calls]
    limit(max(asked))
    build()
    limit(max(asked) - 1)
    with pytest.raises(ArgumentError):
        build()


def _guarded(build, monkeypatch) -> tuple[torch.nn.Module, list[tuple[int, int]]]:
    """Build a model, recording ``(parameters, buffer bytes)`` of every call to the memory guard."""
    calls = []

    def spy(what, fix, *, parameters=0, buffer_bytes=0):
        calls.append((parameters, buffer_bytes))
        errors.check_memory(what, fix, parameters=parameters, buffer_bytes=buffer_bytes)

    for module in (hierarchical, autoregressive, diffusion):
        monkeypatch.setattr(module, "check_memory", spy)
    return build(), calls


_width = st.integers(1, 12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dims=st.lists(st.integers(1, 5), min_size=1, max_size=3), data=st.data(),
       inference=st.sampled_from(["top_down", "bottom_up"]), merge=st.sampled_from(["precision", "residual"]),
       skip=st.booleans(), conv=st.booleans())
def test_every_network_of_a_hierarchical_vae_is_guarded(monkeypatch, dims, data, inference, merge, skip, conv):
    """Property: the guarded counts add up to the model's parameters, whatever the configuration,
    so no network of it is built without the guard."""
    widths = data.draw(st.lists(_width, min_size=len(dims), max_size=len(dims)))
    if conv:
        channels = data.draw(st.tuples(_width, _width))
        model, counts = _guarded(lambda: HierarchicalVAE.conv(dims, widths, channels=channels, inference=inference,
                                                              merge=merge, skip=skip), monkeypatch)
    else:
        model, counts = _guarded(lambda: HierarchicalVAE.mlp(dims, widths, in_features=(1, 3, 4), inference=inference,
                                                             merge=merge, skip=skip), monkeypatch)
    assert sum(parameters for parameters, _ in counts) == _params(model)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(z=st.integers(1, 4), h=st.integers(1, 9), w=st.integers(1, 9), channels=_width, layers=st.integers(0, 3),
       kernel=st.sampled_from([1, 3, 5]), hidden_kernel=st.sampled_from([1, 3]), z_hidden=_width)
def test_the_pixelcnn_guard_counts_its_decoder_exactly(monkeypatch, z, h, w, channels, layers, kernel, hidden_kernel,
                                                      z_hidden):
    model, counts = _guarded(lambda: PixelCNNDecoder(z, (1, h, w), channels=channels, layers=layers,
                                                     kernel_size=kernel, hidden_kernel=hidden_kernel,
                                                     z_hidden=z_hidden), monkeypatch)
    assert counts[0][0] == _params(model)  # the decoder's own guard, before any layer is built


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3), steps=st.integers(1, 50), hidden=_width,
       time_features=st.integers(1, 8))
def test_the_diffusion_guard_counts_its_model_exactly(monkeypatch, shape, steps, hidden, time_features):
    model, counts = _guarded(lambda: DiffusionModel(tuple(shape), steps=steps, hidden=hidden,
                                                    time_features=time_features), monkeypatch)
    assert counts[0][0] == _params(model)


def test_the_conv_decoder_and_the_upper_layers_are_guarded_too(limit):
    trunk = _ConvTrunk((3, 5), 7, torch.nn.SiLU)
    decoder = _ConvDecoder(4, (3, 5), 7, torch.nn.SiLU)
    assert _params(decoder) > _params(trunk)
    limit(16 * _params(trunk))  # the trunk fits, the larger decoder does not
    with pytest.raises(ArgumentError, match="a convolutional decoder") as e:
        HierarchicalVAE.conv((4, 2), (7, 8), channels=(3, 5))
    assert _counted(str(e.value)) == _params(decoder)
    # the networks of the upper layers, built by the constructor itself
    with pytest.raises(ArgumentError, match=r"an MLP with sizes \[2, 100000000, 100000000, 8\] .*upper_hidden"):
        HierarchicalVAE(torch.nn.Flatten(), torch.nn.Linear(4, 64), (4, 2), feature_dim=8, upper_hidden=10**8)


def test_a_schedule_and_a_mask_are_guarded_by_their_size_alone(limit):
    limit(1000)
    with pytest.raises(ArgumentError, match=r"a schedule of T \+ 1 = 1,001 log-SNR values would need .* choose "
                                            r"fewer steps"):
        log_snr_schedule(1000)
    with pytest.raises(ArgumentError, match=r"a 17×17 causal mask would need .* choose a smaller kernel_size"):
        causal_mask(17, "A")
    with pytest.raises(ArgumentError, match="choose fewer steps"):  # the schedule dominates: steps named
        DiffusionModel(SMALL, steps=10**6, hidden=1)


@pytest.mark.parametrize("case, build", [
    ("H33", lambda: HierarchicalVAE.mlp((4, 2), hidden=(10**7, 8), in_features=SMALL)),
    ("H34", lambda: PixelCNNDecoder(3, SMALL, channels=10**6)),
    ("H35", lambda: DiffusionModel(SMALL, steps=4, hidden=10**7)),
])
def test_huge_part_iii_models_are_refused_on_any_machine(case, build):
    with pytest.raises(ArgumentError, match=r"would need .* GiB to train: .* parameters .* more than"):
        build()


def test_the_red_team_cases_under_a_3_gb_address_space_limit():  # H33–H36, as they were run
    script = textwrap.dedent("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 * 10**9, resource.getrlimit(resource.RLIMIT_AS)[1]))
        from vae_tutorial.models.autoregressive import PixelCNNDecoder
        from vae_tutorial.models.diffusion import DiffusionModel
        from vae_tutorial.errors import ArgumentError
        from vae_tutorial.models.hierarchical import HierarchicalVAE
        for build in (lambda: HierarchicalVAE.mlp((4, 2), hidden=(10**7, 8), in_features=(1, 8, 8)),
                      lambda: PixelCNNDecoder(3, (1, 8, 8), channels=10**6),
                      lambda: DiffusionModel((1, 8, 8), steps=4, hidden=10**7),
                      lambda: DiffusionModel((1, 8, 8), steps=10**9, hidden=8)):
            try:
                build()
                print("built")
            except ArgumentError as e:
                print(e)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 4 and all("ulimit -v" in line for line in lines), out.stdout
    assert "choose fewer steps" in lines[3] and "steps=1000000000" in lines[3]  # H36 names the argument


def test_the_core_models_use_the_same_guard(limit):
    limit(0)
    with pytest.raises(ArgumentError, match=r"an MLP with sizes \[64, 8, 4\] would need .* more than a test limit"):
        vt.MLPEncoder(SMALL, [8], 2)
    with pytest.raises(ArgumentError, match="more than a test limit"):
        vt.ConvDecoder(2, (8, 4), 16)


# ----------------------------------------------------------------------------- H08

def test_a_numpy_width_is_a_width():  # H08
    a = HierarchicalVAE.mlp(latent_dims=(4, 2), hidden=np.int64(16), in_features=SMALL)
    b = HierarchicalVAE.mlp(latent_dims=(4, 2), hidden=16, in_features=SMALL)
    assert repr(a) == repr(b)
    c = HierarchicalVAE.conv(latent_dims=(4, 2), hidden=np.int32(8), channels=(2, 3))
    assert c.trunk.net[-2].out_features == 8
    with pytest.raises(errors.ArgumentTypeError, match="hidden must be a width"):
        HierarchicalVAE.mlp(latent_dims=(4, 2), hidden=np.float64(16.0), in_features=SMALL)


# ----------------------------------------------------------------------------- K12

def _gaussian_vae(gaussian_logvar):
    torch.manual_seed(0)
    return vt.VAE(vt.MLPEncoder(SMALL, [8], 2), vt.MLPDecoder(2, [8], SMALL), "gaussian",
                  gaussian_logvar=gaussian_logvar)


@pytest.mark.parametrize("first, second, words", [
    ("learned", 0.0, "obs_logvar is learned in the checkpoint but fixed now"),
    (0.0, "learned", "obs_logvar is fixed in the checkpoint but learned now"),
])
def test_learned_and_fixed_observation_variances_are_named_on_resume(tmp_path, first, second, words):  # K12
    x = torch.rand(16, *SMALL, generator=torch.Generator().manual_seed(0))
    ckpt = tmp_path / "ck.pt"
    vt.fit(_gaussian_vae(first), x, epochs=1, progress=False, checkpoint=ckpt)
    with pytest.raises(ResumeMismatchError, match=words) as e:
        vt.fit(_gaussian_vae(second), x, epochs=2, progress=False, checkpoint=ckpt)
    assert "optimiser" not in str(e.value) and "gaussian_logvar" in str(e.value)


# ----------------------------------------------------------------------------- K26

@pytest.mark.parametrize("where", ["afile/ck.pt", "afile/sub/ck.pt", "."])
def test_a_path_that_cannot_be_written_is_named_before_any_work(tmp_path, where):  # K26
    (tmp_path / "afile").write_text("mine")
    path = tmp_path / where
    with pytest.raises(ArgumentError, match=r"checkpoint=.* cannot be written: .* (is a file|is a folder)"):
        check_writable(path, "checkpoint")
    with pytest.raises(FileWriteError, match="could not write the checkpoint") as e:
        atomic_write(path, lambda f: f.write(b"x"), "checkpoint")
    assert isinstance(e.value, VAETutorialError)
    assert (tmp_path / "afile").read_text() == "mine"
    assert check_writable(tmp_path / "new" / "deeper" / "ck.pt", "checkpoint") == tmp_path / "new" / "deeper" / "ck.pt"


def test_fit_refuses_an_unwritable_checkpoint_before_training(tmp_path):  # K26
    (tmp_path / "afile").write_text("mine")
    model = _gaussian_vae(0.0)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ArgumentError, match="checkpoint=.* is a file, not a folder"):
        vt.fit(model, torch.rand(16, *SMALL), epochs=1, progress=False, checkpoint=tmp_path / "afile" / "ck.pt")
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))  # no epoch was trained
