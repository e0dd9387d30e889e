"""Run folders own their files, every write is atomic, numbers leaving are finite (issue 21).

Catalogue tests of the second red-team round (../shared/reviews/redteam-2026-12-07.md), by
case id: the user's files are never overwritten or deleted (C82), an empty ``--out`` is
refused (C07), a full disk or file-size limit keeps the previous good file and prints one
``error:`` line (C85, P08, P09, K27), an edited ``config.json`` cannot change a run's meaning
behind its checkpoint's back (C50), a model with a NaN weight is refused by ``evaluate`` and
``--json`` is strict (F49, C60, C81), SIGTERM stops like Ctrl-C (P05), and files get the
user's umask. In-process on the 8×8 digits, except where a real process is the point.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vae_tutorial import cli
from vae_tutorial.errors import ArgumentError
from vae_tutorial.training.files import FileWriteError, atomic_write
from vae_tutorial.training.train import load_checkpoint, save_checkpoint

TINY = ["--hidden", "16", "--latent-dim", "2", "--subset", "128", "--test-images", "32", "--device", "cpu"]
ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("runs") / "run"
    assert cli.main(["train", "--epochs", "1", "--out", str(folder), *TINY]) == 0
    return folder


# ----------------------------------------------------------------------------- the user's files

def _users_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "config.json").write_text('{"my_project": "keep me"}')
    (folder / "notes.txt").write_text("mine")
    return folder


@pytest.mark.parametrize("lr", ["1e-3", "1e12"])  # C82: training that succeeds, and one that fails
def test_train_never_writes_into_a_folder_of_the_users_files(tmp_path, capsys, lr):
    folder = _users_folder(tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--lr", lr, "--out", folder, *TINY)
    line = one_error_line(err)
    assert code == 1 and "did not write" in line and "config.json" in line and "notes.txt" in line, line
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_an_empty_folder_is_adopted_and_handed_back_empty_when_training_fails(tmp_path, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--lr", "1e12", "--out", folder, *TINY)
    assert code == 1
    assert folder.is_dir() and list(folder.iterdir()) == []  # the user's folder stays, empty


def test_a_run_folder_is_resumed_and_marked(run, capsys):
    assert (run / cli.RUN_MARKER).is_file()
    marker = json.loads((run / cli.RUN_MARKER).read_text())
    assert len(marker["config_sha256"]) == 64
    code, out, _ = run_cli(capsys, "train", "--epochs", "1", "--out", run, *TINY)
    assert code == 0 and "nothing to do" in out


def test_a_run_folder_from_before_the_marker_is_still_a_run(run, tmp_path, capsys):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for name in (cli.CONFIG_FILE, cli.CHECKPOINT_FILE):
        (legacy / name).write_bytes((run / name).read_bytes())
    code, out, _ = run_cli(capsys, "train", "--epochs", "1", "--out", legacy, *TINY)
    assert code == 0 and "nothing to do" in out
    assert run_cli(capsys, "evaluate", "--run", legacy, "--k", "2")[0] == 0


@pytest.mark.parametrize("command", ["train", "sample"])
def test_an_empty_out_is_refused(run, capsys, command, tmp_path, monkeypatch):  # C07
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--out", "", *TINY] if command == "train" else ["sample", "--run", run, "--out", ""]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1 and "--out is empty" in one_error_line(err)
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- edited config.json

@pytest.mark.parametrize("edit", [
    {"likelihood": "continuous_bernoulli"},
    {"binarize": "static"},
])
@pytest.mark.parametrize("command", ["evaluate", "sample"])
def test_an_edited_config_is_refused(run, tmp_path, capsys, edit, command):  # C50
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in run.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    config = json.loads((copy / cli.CONFIG_FILE).read_text())
    config.update(edit)
    (copy / cli.CONFIG_FILE).write_text(json.dumps(config))
    argv = ["evaluate", "--run", copy, "--k", "2"] if command == "evaluate" else ["sample", "--run", copy,
                                                                                   "--out", tmp_path / "s.png"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1 and "was changed after training" in one_error_line(err)


# ----------------------------------------------------------------------------- numbers leaving

def _nan_run(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "nan-run"
    copy.mkdir()
    for p in run.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    state = load_checkpoint(copy / cli.CHECKPOINT_FILE)
    name = next(k for k in state["model"] if k.endswith("weight"))
    state["model"][name][0, 0] = float("nan")
    save_checkpoint(copy / cli.CHECKPOINT_FILE, state)  # a consistent digest: only the NaN is wrong
    return copy


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_evaluate_refuses_a_model_with_a_nan_weight(run, tmp_path, capsys, json_flag):  # C60, C81
    code, out, err = run_cli(capsys, "evaluate", "--run", _nan_run(run, tmp_path), "--k", "2", *json_flag)
    assert code == 1 and out == "" and "non-finite" in one_error_line(err)


def test_evaluate_model_refuses_nan_weights_and_json_is_strict(run, capsys):  # F49
    from vae_tutorial import evaluate_model, load_dataset

    model, _ = cli.load_run(run)
    data = load_dataset("digits", "test").subset(8)
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("inf")
    with pytest.raises(ArgumentError, match="non-finite"):
        evaluate_model(model, data, k=2)
    code, out, _ = run_cli(capsys, "evaluate", "--run", run, "--k", "2", "--json")
    assert code == 0 and json.loads(out)["n"] > 0  # the good run: strict JSON parses


# ----------------------------------------------------------------------------- full disks, umask

def _limit_file_size(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return apply


def _cli_process(*argv, limit: int | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAE_TUTORIAL_DEVICE")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "vae_tutorial", *map(str, argv)], capture_output=True,
                          text=True, env=env, timeout=timeout,
                          preexec_fn=_limit_file_size(limit) if limit else None)


def test_sample_on_a_full_disk_keeps_the_previous_png(run, tmp_path):  # C85
    png = tmp_path / "samples.png"
    first = _cli_process("sample", "--run", run, "--n", "4", "--out", png)
    assert first.returncode == 0, first.stderr
    good = png.read_bytes()
    second = _cli_process("sample", "--run", run, "--n", "400", "--scale", "4", "--out", png,
                          limit=len(good) + 512)
    assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr
    assert second.stderr.strip().startswith("error: could not write the PNG") and "unchanged" in second.stderr
    assert png.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.png"]  # no temporary left


def test_train_with_a_file_size_limit_is_one_error_line(tmp_path):  # P08
    out = tmp_path / "run"
    done = _cli_process("train", "--epochs", "1", "--out", out, *TINY, limit=40_000)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "could not write the checkpoint" in done.stderr and "ulimit -f" in done.stderr
    assert not out.exists()  # nothing half-written left


def test_atomic_write_keeps_the_old_file_and_names_the_cause(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"good")

    def fail(f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(FileWriteError, match="disk is full") as e:
        atomic_write(target, fail, "checkpoint")
    assert isinstance(e.value, OSError) and target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_files_get_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "x.json", lambda f: f.write(b"{}"))
        save_checkpoint(tmp_path / "c.pt", {"a": torch.zeros(1)})
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644
    assert ((tmp_path / "c.pt").stat().st_mode & 0o777) == 0o644


# ----------------------------------------------------------------------------- signals

def test_sigterm_stops_training_like_ctrl_c(tmp_path):  # P05
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "vae_tutorial", "train", "--epochs", "50", "--out", str(out),
                             "--hidden", "64", "--latent-dim", "2", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # wait until the run is under way (it prints its first line before the first epoch)
    first = proc.stdout.readline()
    assert first.startswith(("training", "resuming")), first
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", err
    assert "Traceback" not in err
    # either no epoch finished (nothing left) or the run resumes from a whole checkpoint
    if out.exists():
        assert (out / cli.CHECKPOINT_FILE).is_file()
        load_checkpoint(out / cli.CHECKPOINT_FILE)


# ----------------------------------------------------------------------------- devices

def test_the_meta_device_is_refused_before_the_model_moves(capsys, tmp_path):  # F25, C75, C79, C80
    from vae_tutorial.errors import DeviceError
    import vae_tutorial as vt

    model = vt.VAE(vt.MLPEncoder((1, 8, 8), [8], 2), vt.MLPDecoder(2, [8], (1, 8, 8)))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(DeviceError, match="meta"):
        vt.fit(model, torch.rand(16, 1, 8, 8).round(), epochs=1, device="meta")
    assert all(p.device.type == "cpu" and torch.equal(p, b) for p, b in zip(model.parameters(), before))
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", tmp_path / "r", *TINY[:-2], "--device", "meta")
    assert code == 1 and "meta" in one_error_line(err) and not (tmp_path / "r").exists()
