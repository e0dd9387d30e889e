"""The command line never shows a traceback for a user's mistake (issue 11).

One ``error:`` line on stderr, exit status 1 (2 for a malformed command line, from argparse),
no half-written run folder; ``--debug`` keeps the traceback. Runs in-process on the digits.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from vae_tutorial import cli
from vae_tutorial.errors import DeviceError
from vae_tutorial.training.train import load_checkpoint, save_checkpoint

TINY = ["--hidden", "16", "--latent-dim", "2", "--subset", "128", "--test-images", "32", "--device", "cpu"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli-errors") / "run"
    assert cli.main(["train", "--epochs", "1", "--out", str(folder), *TINY]) == 0
    return folder


@pytest.fixture
def copy(run, tmp_path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(run, folder)
    return folder


# ----------------------------------------------------------------------------- devices

@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["train", "evaluate", "sample"])
def test_an_unavailable_device_from_the_environment_is_one_line(command, run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VAE_TUTORIAL_DEVICE", "cuda")
    out = tmp_path / "new-run"
    argv = {"train": ["train", "--out", out, "--hidden", "16"],
            "evaluate": ["evaluate", "--run", run, "--k", "2"],
            "sample": ["sample", "--run", run, "--out", tmp_path / "s.png"]}[command]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1 and "VAE_TUTORIAL_DEVICE=cuda: this PyTorch sees no CUDA GPU" in one_error_line(err)
    assert not out.exists() and not (tmp_path / "s.png").exists()


def test_debug_keeps_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_TUTORIAL_DEVICE", "no-such-device")
    with pytest.raises(DeviceError):
        cli.main(["train", "--out", str(tmp_path / "r"), "--debug"])
    with pytest.raises(DeviceError):
        cli.main(["--debug", "train", "--out", str(tmp_path / "r")])


# ----------------------------------------------------------------------------- config.json and checkpoints

@pytest.mark.parametrize("edit, key", [
    (lambda c: c.pop("latent_dim"), "latent_dim"),
    (lambda c: c.update(image_shape=[1, 28]), "image_shape"),
    (lambda c: c.update(dataset="fashion-mnist"), "image_shape"),  # the data set changed, not the shape
    (lambda c: c.update(dataset="cifar"), "dataset"),
    (lambda c: c.update(latent_dim=-2), "latent_dim"),
    (lambda c: c.update(hidden=[16, -1]), "hidden"),
    (lambda c: c.update(hidden="16"), "hidden"),
    (lambda c: c.update(model="resnet"), "model"),
    (lambda c: c.update(likelihood="poisson"), "likelihood"),
    (lambda c: c.update(binarize="sometimes"), "binarize"),
    (lambda c: c.update(training=[1]), "training"),
])
@pytest.mark.parametrize("command", ["evaluate", "sample", "train"])
def test_a_malformed_config_names_the_file_and_the_key(copy, capsys, edit, key, command):
    path = copy / cli.CONFIG_FILE
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))
    argv = {"evaluate": ["evaluate", "--run", copy, "--k", "2"], "sample": ["sample", "--run", copy],
            "train": ["train", "--epochs", "2", "--out", copy, *TINY]}[command]
    code, _, err = run_cli(capsys, *argv)
    line = one_error_line(err)
    assert code == 1 and f"{path}: key {key!r}" in line, line
    if command == "train":
        assert json.loads(path.read_text()) == config  # the run folder is left as it was


@pytest.mark.parametrize("state, match", [
    ([1, 2, 3], "holds a list"),
    ({"epoch": 3}, "no 'model', 'optimizer'"),
])
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_checkpoint_that_is_not_a_complete_checkpoint(copy, capsys, state, match, command):
    torch.save(state, copy / cli.CHECKPOINT_FILE)
    argv = (["train", "--epochs", "3", "--out", copy, *TINY] if command == "train"
            else ["evaluate", "--run", copy, "--k", "2"])
    code, out, err = run_cli(capsys, *argv)
    assert code == 1 and match in one_error_line(err)
    assert "nothing to do" not in out


def test_a_checkpoint_missing_its_optimizer(copy, capsys):
    ckpt = copy / cli.CHECKPOINT_FILE
    state = load_checkpoint(ckpt)
    del state["optimizer"]
    save_checkpoint(ckpt, state)
    code, _, err = run_cli(capsys, "train", "--epochs", "2", "--out", copy, *TINY)
    assert code == 1 and "no 'optimizer'" in one_error_line(err)


def test_a_flipped_byte_in_the_checkpoint(copy, capsys):
    ckpt = copy / cli.CHECKPOINT_FILE
    raw = load_checkpoint(ckpt)["model"]["decoder.net.2.weight"].numpy().tobytes()
    blob = bytearray(ckpt.read_bytes())
    at = blob.find(raw[:64])
    blob[at + 40] ^= 0x01
    ckpt.write_bytes(bytes(blob))
    for argv in (["evaluate", "--run", copy, "--k", "2"], ["sample", "--run", copy],
                 ["train", "--epochs", "2", "--out", copy, *TINY]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 1 and "is damaged" in one_error_line(err)


# ----------------------------------------------------------------------------- options out of range

@pytest.mark.parametrize("argv, match", [
    (["sample", "--scale", "100000"], "the PNG would have"),
    (["sample", "--n", "100000000"], "--n 100000000 is more samples"),
    (["sample", "--seed", str(2**70)], "--seed must be an integer"),
    (["sample", "--seed", "-1"], "--seed must be an integer ≥ 0"),
    (["evaluate", "--seed", str(2**70)], "--seed"),
    (["evaluate", "--k", "0"], "--k must be at least 1"),
    (["evaluate", "--max-examples", "0"], "--max-examples must be positive"),
])
def test_options_out_of_range_are_refused_up_front(run, capsys, argv, match):
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, *argv, "--run", run)
    assert code == 1 and match in one_error_line(err)
    assert time.perf_counter() - t0 < 10


@pytest.mark.parametrize("argv, match", [
    (["--hidden", "100000", "100000"], "parameters"),
    (["--latent-dim", "0"], "latent dimension and hidden widths must be positive"),
    (["--seed", str(2**70)], "--seed"),
    (["--warmup", "nan"], "--warmup must be a finite number"),
    (["--warmup", "-5"], "--warmup must be a finite number"),
    (["--beta", "nan"], "--beta >= 0"),
    (["--lr", "nan"], "--lr > 0"),
    (["--lr", "inf"], "--lr > 0"),
    (["--epochs", "-1"], "--epochs >= 1"),
    (["--subset", "0"], "--subset must be a positive"),
])
def test_train_options_out_of_range_leave_no_run_folder(tmp_path, capsys, argv, match):
    out = tmp_path / "new"
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, "train", "--out", out, "--device", "cpu", *argv)
    assert code == 1 and match in one_error_line(err)
    assert not out.exists()
    assert time.perf_counter() - t0 < 10


def test_a_malformed_command_line_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--epochs", "two"])
    assert exc.value.code == 2 and "invalid int value" in capsys.readouterr().err


def test_a_run_that_fails_in_its_first_epoch_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "diverges"
    code, _, err = run_cli(capsys, "train", "--epochs", "2", "--lr", "1e12", "--out", out, *TINY)
    line = one_error_line(err)
    assert code == 1 and ("NaN or infinite" in line or "validation ELBO became nan" in line), line
    assert not out.exists()


# ----------------------------------------------------------------------------- resuming

@pytest.mark.parametrize("argv, what", [
    (["--beta", "0.5"], "--beta"),
    (["--warmup", "3"], "--warmup"),
])
def test_resuming_with_another_beta_is_refused(copy, capsys, argv, what):
    before = (copy / cli.CONFIG_FILE).read_text()
    code, _, err = run_cli(capsys, "train", "--epochs", "2", "--out", copy, *TINY, *argv)
    assert code == 1 and what in one_error_line(err) and "--fresh" in err
    assert (copy / cli.CONFIG_FILE).read_text() == before


def test_stale_checkpoint_temporaries_are_removed_and_one_image_has_no_active_units(copy, capsys):
    tmp = copy / f"{cli.CHECKPOINT_FILE}.x7y8z9.tmp"
    tmp.write_bytes(b"half a checkpoint from a killed save")
    code, out, err = run_cli(capsys, "train", "--epochs", "2", "--out", copy, *TINY)
    assert code == 0, err
    assert not tmp.exists() and "resuming" in out
    code, out, err = run_cli(capsys, "evaluate", "--run", copy, "--k", "2", "--max-examples", "1")
    assert code == 0, err
    assert "active units                    n/a" in out
    code, out, _ = run_cli(capsys, "evaluate", "--run", copy, "--k", "2", "--max-examples", "1", "--json")
    assert json.loads(out)["active_units"] is None


# ----------------------------------------------------------------------------- the run-folder lock

def test_a_second_train_on_the_same_folder_refuses_while_the_first_runs(copy, capsys):
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    fd = os.open(copy, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running 'train' holds it
        code, _, err = run_cli(capsys, "train", "--epochs", "2", "--out", copy, *TINY)
        assert code == 1 and "is in use: another 'train' is writing to it" in one_error_line(err)
        assert {p.name: p.read_bytes() for p in copy.iterdir()} == before
    finally:
        os.close(fd)
    code, _, err = run_cli(capsys, "train", "--epochs", "2", "--out", copy, *TINY)
    assert code == 0, err  # the lock went with the first process
