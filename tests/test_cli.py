"""The command line: train → evaluate → sample on the offline 8×8 digits, and clean errors."""
from __future__ import annotations

import json
import math
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vae_tutorial import cli
from vae_tutorial.training.train import load_checkpoint

SMALL = ["--hidden", "32", "--latent-dim", "3", "--batch-size", "100"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG signature and IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 2-epoch run on digits, trained once for the module."""
    folder = tmp_path_factory.mktemp("cli") / "digits-run"
    code = cli.main(["train", "--epochs", "2", "--seed", "1", "--out", str(folder), "--device", "cpu", *SMALL])
    assert code == 0
    return folder


def test_train_writes_checkpoint_and_config(run):
    config = json.loads((run / cli.CONFIG_FILE).read_text())
    assert config["dataset"] == "digits"
    assert config["image_shape"] == [1, 8, 8]
    assert (config["model"], config["latent_dim"], config["hidden"]) == ("mlp", 3, [32])
    assert config["training"]["epochs"] == 2 and config["training"]["seed"] == 1
    state = load_checkpoint(run / cli.CHECKPOINT_FILE)
    assert state["epoch"] == 2 and len(state["history"]) == 2
    model, _ = cli.load_run(run)
    assert model.latent_dim == 3
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state["model"][name]), name


def test_train_prints_one_line_per_epoch(tmp_path, capsys):
    code, out, err = run_cli(capsys, "train", "--epochs", "2", "--out", tmp_path / "r", "--device", "cpu", *SMALL)
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]
    elbos = [float(line.split("train ELBO")[1].split()[0]) for line in lines]
    assert all(math.isfinite(e) and e < 0 for e in elbos)
    assert "test ELBO" in lines[0]


def test_same_seed_same_weights_and_resume_matches(tmp_path, capsys):
    args = ["train", "--device", "cpu", "--seed", "3", *SMALL]
    assert run_cli(capsys, *args, "--epochs", "2", "--out", tmp_path / "a")[0] == 0
    assert run_cli(capsys, *args, "--epochs", "1", "--out", tmp_path / "b")[0] == 0
    code, out, _ = run_cli(capsys, *args, "--epochs", "2", "--out", tmp_path / "b")  # resumes after epoch 1
    assert code == 0 and "resuming" in out
    a = load_checkpoint(tmp_path / "a" / cli.CHECKPOINT_FILE)["model"]
    b = load_checkpoint(tmp_path / "b" / cli.CHECKPOINT_FILE)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert run_cli(capsys, *args[:-len(SMALL)], "--seed", "4", *SMALL, "--epochs", "1", "--out", tmp_path / "c")[0] == 0
    c = load_checkpoint(tmp_path / "c" / cli.CHECKPOINT_FILE)["model"]
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_evaluate_prints_the_numbers(run, capsys):
    code, out, err = run_cli(capsys, "evaluate", "--run", run, "--k", "20", "--device", "cpu")
    assert code == 0, err
    for words in ("ELBO", "NLL, IWAE k=20", "bits/dim", "active units", "reconstruction error"):
        assert words in out
    code, out, _ = run_cli(capsys, "evaluate", "--run", run, "--k", "20", "--device", "cpu", "--json")
    r = json.loads(out)
    assert r["n"] == 297 and r["k"] == 20 and r["dims"] == 64
    assert all(math.isfinite(r[key]) for key in ("elbo", "nll", "bits_per_dim", "recon_error"))
    assert r["bits_per_dim"] == pytest.approx(r["nll"] / (64 * math.log(2)))
    assert r["nll"] <= -r["elbo"] + 1.0  # the IWAE bound is tighter than the ELBO (up to noise)
    assert 0 <= r["active_units"] <= 3


def test_sample_writes_png_of_the_expected_size(run, tmp_path, capsys):
    out_file = tmp_path / "grid.png"
    code, out, err = run_cli(capsys, "sample", "--run", run, "--n", "10", "--nrow", "5", "--scale", "2",
                             "--out", out_file, "--device", "cpu")
    assert code == 0, err
    # 2 rows × 5 columns of 8×8 images, 1-pixel gaps, every pixel doubled
    assert png_size(out_file) == ((5 * 8 + 4) * 2, (2 * 8 + 1) * 2)
    again = tmp_path / "again.png"
    assert run_cli(capsys, "sample", "--run", run, "--n", "10", "--nrow", "5", "--scale", "2",
                   "--out", again, "--device", "cpu")[0] == 0
    assert again.read_bytes() == out_file.read_bytes()  # seeded


def test_help_lists_commands_and_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in ("train", "evaluate", "sample", "examples:"):
        assert word in out
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    assert "--latent-dim" in capsys.readouterr().out


def test_module_entry_point_runs():
    env = dict(os.environ, CI="true")
    done = subprocess.run([sys.executable, "-m", "vae_tutorial", "evaluate", "--run", "/nonexistent/run"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    assert "no run folder at /nonexistent/run" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_run_folder_is_a_clean_error(tmp_path, capsys):
    code, _, err = run_cli(capsys, "sample", "--run", tmp_path / "nope")
    assert code == 1 and err.startswith("error: no run folder")
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "evaluate", "--run", tmp_path / "empty")
    assert code == 1 and "no config.json" in err and "Traceback" not in err


def test_corrupt_checkpoint_is_a_clean_error(run, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    (bad / cli.CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    code, _, err = run_cli(capsys, "evaluate", "--run", bad, "--k", "2")
    assert code == 1 and "is not a readable vae_tutorial checkpoint" in err and "Traceback" not in err


def test_config_that_does_not_match_the_weights_is_a_clean_error(run, tmp_path, capsys):
    bad = tmp_path / "mixed"
    shutil.copytree(run, bad)
    config = json.loads((bad / cli.CONFIG_FILE).read_text())
    config["hidden"] = [16]
    (bad / cli.CONFIG_FILE).write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "sample", "--run", bad)
    assert code == 1 and "was changed after training" in err  # the run folder's marker knows
    (bad / cli.RUN_MARKER).unlink()  # a run folder from before the marker: the weights tell
    code, _, err = run_cli(capsys, "sample", "--run", bad)
    assert code == 1 and "does not fit the model" in err
    (bad / cli.CONFIG_FILE).write_text("{not json")
    code, _, err = run_cli(capsys, "sample", "--run", bad)
    assert code == 1 and "not readable JSON" in err


def test_unknown_dataset_and_bad_options_are_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--dataset", "cifar"])
    assert exc.value.code == 2
    assert "invalid choice: 'cifar'" in capsys.readouterr().err
    code, _, err = run_cli(capsys, "train", "--model", "conv", "--out", tmp_path / "c")
    assert code == 1 and "conv model needs 1x28x28 images" in err
    code, _, err = run_cli(capsys, "train", "--epochs", "0", "--out", tmp_path / "z")
    assert code == 1 and "--epochs >= 1" in err


def test_resuming_with_another_architecture_is_refused(run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    code, _, err = run_cli(capsys, "train", "--epochs", "3", "--out", copy, "--device", "cpu",
                           "--hidden", "64", "--latent-dim", "3", "--batch-size", "100", "--seed", "1")
    assert code == 1 and "different hidden" in err and "--fresh" in err


def test_conv_model_on_fashion_mnist(tmp_path, capsys, fashion_mnist_present):
    run = tmp_path / "conv"
    code, out, err = run_cli(capsys, "train", "--dataset", "fashion-mnist", "--model", "conv", "--subset", "256",
                             "--test-images", "0", "--epochs", "1", "--latent-dim", "2", "--hidden", "32",
                             "--out", run, "--device", "cpu")
    assert code == 0, err
    assert "test ELBO" not in out
    assert json.loads((run / cli.CONFIG_FILE).read_text())["image_shape"] == [1, 28, 28]
    code, _, err = run_cli(capsys, "sample", "--run", run, "--n", "4", "--out", tmp_path / "s.png", "--device", "cpu")
    assert code == 0, err
    assert png_size(tmp_path / "s.png") == (2 * 28 + 1, 2 * 28 + 1)  # default 2×2 grid, scale 1 for 28×28


def test_grad_clip_and_skip_threshold_reach_fit_and_the_resume_rule(tmp_path, capsys):
    args = ["train", "--device", "cpu", "--seed", "5", *SMALL]
    # a norm no gradient stays under: every update is skipped, and the run says so and stops
    code, _, err = run_cli(capsys, *args, "--epochs", "1", "--skip-threshold", "1e-12", "--out", tmp_path / "s")
    assert code == 1 and "every step of epoch 1 was skipped" in err
    assert not (tmp_path / "s").exists()  # no epoch finished: the folder it created is gone
    # clipping changes the weights against an unclipped run of the same seed, and is recorded
    assert run_cli(capsys, *args, "--epochs", "1", "--out", tmp_path / "plain")[0] == 0
    code, out, err = run_cli(capsys, *args, "--epochs", "1", "--grad-clip", "0.01", "--skip-threshold", "1e9",
                             "--out", tmp_path / "c")
    assert code == 0, err
    assert "skipped 0 steps" in out
    plain = load_checkpoint(tmp_path / "plain" / cli.CHECKPOINT_FILE)["model"]
    clipped = load_checkpoint(tmp_path / "c" / cli.CHECKPOINT_FILE)["model"]
    assert not all(torch.equal(plain[k], clipped[k]) for k in plain)
    config = json.loads((tmp_path / "c" / cli.CONFIG_FILE).read_text())
    assert (config["training"]["grad_clip"], config["training"]["skip_threshold"]) == (0.01, 1e9)
    # resuming with another clip is refused, naming it; the same settings resume
    code, _, err = run_cli(capsys, *args, "--epochs", "2", "--grad-clip", "0.02", "--skip-threshold", "1e9",
                           "--out", tmp_path / "c")
    assert code == 1 and "--grad-clip" in err and "--skip-threshold" not in err.split("different")[1].split(";")[0]
    code, out, _ = run_cli(capsys, *args, "--epochs", "2", "--grad-clip", "0.01", "--skip-threshold", "1e9",
                           "--out", tmp_path / "c")
    assert code == 0 and "resuming" in out
    for bad in ("0", "-1", "nan", "inf"):
        code, _, err = run_cli(capsys, *args, "--grad-clip", bad, "--out", tmp_path / "bad")
        assert code == 1 and "--grad-clip must be a finite gradient norm > 0" in err
    assert not (tmp_path / "bad").exists()
