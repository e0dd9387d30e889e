"""vae_tutorial.training.distributed: data-parallel ``fit`` under torch.distributed (gloo, 2 CPU processes).

The processes are real: ``torch.multiprocessing`` with the spawn method for ``fit`` (one launch
runs every scenario, to pay the start-up once) and ``python -m torch.distributed.run`` for the
command line, both on 127.0.0.1 with a free port. A launch that hangs fails the test at a
deadline instead of waiting for ever. The models and data are tiny: seconds, not minutes.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import vae_tutorial as vt
from vae_tutorial import cli, distributed
from vae_tutorial.training.distributed import World
from vae_tutorial.errors import ArgumentError, ResumeMismatchError

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (1, 8, 8)
N, BATCH = 60, 16  # 4 global batches an epoch, the last of 12 images: shares of 6
DEADLINE = 300  # seconds for one launch on a busy CI machine; a hang fails here


def _data(n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.TensorDataset(torch.rand(n, *SHAPE, generator=g), torch.zeros(n, dtype=torch.long))


def _autoencoder():
    torch.manual_seed(1)  # DistributedDataParallel copies rank 0's weights anyway
    return vt.Autoencoder(vt.MLPEncoder(SHAPE, [16], 3), vt.MLPDecoder(3, [16], SHAPE))


def _vae():
    torch.manual_seed(2)
    return vt.VAE(vt.MLPEncoder(SHAPE, [16], 2), vt.MLPDecoder(2, [16], SHAPE))


FIT = dict(batch_size=BATCH, lr=1e-2, seed=3, device="cpu", progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- without processes

def test_shards_partition_the_global_batch_and_weight_the_loss():
    idx = torch.arange(10, 22)  # a global batch of B = 12
    for size in (1, 2, 3, 5):
        shares = [distributed.shard(idx, World(r, size)) for r in range(size)]
        assert torch.equal(torch.cat([s for s, _ in shares]), idx)  # consecutive, every index once
        assert max(len(s) for s, _ in shares) - min(len(s) for s, _ in shares) <= 1
        # W·B_r/B: the mean of the weighted share means is the global mean
        x = torch.randn(22)
        assert sum(w * x[s].mean() for s, w in shares) / size == pytest.approx(float(x[idx].mean()), abs=1e-6)


def test_a_batch_with_fewer_images_than_processes_is_refused():
    distributed.check_shards(World(0, 2), 60, 16)  # last batch 12: fine
    distributed.check_shards(World(0, 1), 61, 16)  # one process: anything
    for n, b in ((49, 16), (60, 1)):  # a last batch of 1 image, a batch of 1
        with pytest.raises(ArgumentError, match="batch_size"):
            distributed.check_shards(World(0, 2), n, b)


def test_each_process_draws_its_own_reproducible_noise():
    a, b = (distributed.noise_generator(7, World(r, 2), torch.device("cpu")) for r in (0, 1))
    again = distributed.noise_generator(7, World(0, 2), torch.device("cpu"))
    x, y, z = (torch.randn(4, generator=g) for g in (a, b, again))
    assert torch.equal(x, z) and not torch.equal(x, y)


def test_outside_torchrun_the_helpers_are_a_plain_run(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    w = distributed.init_from_environment()
    assert w == World() and not w.active and w.is_main
    assert distributed.agree(w, 5) == [5]
    assert distributed.on_main(w, lambda v: v + 1, 1) == 2
    assert distributed.min_over_ranks(w, 3, torch.device("cpu")) == 3
    with pytest.raises(ArgumentError):  # a plain run raises the error itself
        distributed.on_main(w, distributed.check_shards, World(0, 2), 1, 1)


# ----------------------------------------------------------------------------- 2 processes (spawn)

def _nan_elbo_on_rank_1(model, x, beta, *, y=None, generator=None):
    terms = vt.elbo(model, x, beta, y=y, generator=generator)
    if distributed.world().rank == 1:  # a loss that turns NaN on one process only
        terms.elbo = terms.elbo * float("nan")
    return terms


def _attempt(results: dict, key: str, fn):
    try:
        fn()
        results[key] = "ok"
    except Exception as e:
        results[key] = f"{type(e).__name__}: {e}"


def _worker(rank: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2", OMP_NUM_THREADS="1", CI="true")
    torch.set_num_threads(1)
    tmp = Path(tmp)
    ckpts = tmp / "checkpoints"
    out: dict = {}
    # 1. the deterministic model: the same parameters as one process with the same global batch
    ae = _autoencoder()
    h = vt.fit(ae, _data(), epochs=3, **FIT)
    out["autoencoder"] = {k: v.tolist() for k, v in ae.state_dict().items()}
    out["autoencoder_history"] = [{k: v for k, v in r.items() if k != "seconds"} for r in h.records]
    # 2. a VAE with rank-0 checkpoints: 3 epochs at once, or 2 then a resume to 3
    vae = _vae()
    vt.fit(vae, _data(), epochs=3, checkpoint=ckpts / "once.pt", **FIT)
    out["vae_once"] = {k: v.tolist() for k, v in vae.state_dict().items()}
    vae = _vae()
    vt.fit(vae, _data(), epochs=2, checkpoint=ckpts / "resumed.pt", **FIT)
    vae = _vae()
    vt.fit(vae, _data(), epochs=3, checkpoint=ckpts / "resumed.pt", **FIT)
    out["vae_resumed"] = {k: v.tolist() for k, v in vae.state_dict().items()}
    # 3. failures: every process raises, none waits
    bad = _data()
    if rank == 1:
        bad.tensors[0][5, 0, 0, 0] = float("nan")
    _attempt(out, "bad_data_on_rank_1", lambda: vt.fit(_vae(), bad, epochs=1, **FIT))
    _attempt(out, "other_data_on_rank_1", lambda: vt.fit(_vae(), _data(seed=rank), epochs=1, **FIT))
    _attempt(out, "nan_loss_on_rank_1", lambda: vt.fit(_vae(), _data(), epochs=1, elbo_fn=_nan_elbo_on_rank_1, **FIT))
    _attempt(out, "resume_one_process_checkpoint",
             lambda: vt.fit(_vae(), _data(), epochs=2, checkpoint=tmp / "one_process.pt", **FIT))
    # rank 0 cannot write the checkpoint (its folder is a file): both stop after the first epoch
    _attempt(out, "unwritable_checkpoint",
             lambda: vt.fit(_autoencoder(), _data(), epochs=2, checkpoint=tmp / "a_file" / "x.pt", **FIT))
    # the process group still works after the failures
    _attempt(out, "after", lambda: vt.fit(_autoencoder(), _data(), epochs=1, **FIT))
    (tmp / f"rank{rank}.json").write_text(json.dumps(out))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """One launch of 2 gloo processes running :func:`_worker`; returns (tmp folder, results by rank)."""
    import torch.multiprocessing as mp

    tmp = tmp_path_factory.mktemp("ddp")
    (tmp / "checkpoints").mkdir()
    vt.fit(_vae(), _data(), epochs=1, checkpoint=tmp / "one_process.pt", **FIT)  # to resume at 2 processes
    (tmp / "a_file").write_text("not a folder")
    ctx = mp.start_processes(_worker, args=(_free_port(), str(tmp)), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + DEADLINE
    try:
        # join() waits until a process ends (True once both have; it raises if one raised)
        while not ctx.join(timeout=max(0.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                pytest.fail(f"the 2-process run did not end within {DEADLINE} s (a hang)")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    return tmp, [json.loads((tmp / f"rank{r}.json").read_text()) for r in (0, 1)]


def _tensors(d):
    return {k: torch.tensor(v) for k, v in d.items()}


def test_two_processes_reach_the_parameters_of_one_with_the_same_global_batch(two_processes):
    _, (r0, r1) = two_processes
    one = _autoencoder()
    h = vt.fit(one, _data(), epochs=3, **FIT)
    two = _tensors(r0["autoencoder"])
    assert _tensors(r1["autoencoder"]).keys() == two.keys()
    for k, v in one.state_dict().items():
        assert torch.equal(_tensors(r1["autoencoder"])[k], two[k]), k  # the replicas are identical
        torch.testing.assert_close(two[k], v, rtol=1e-4, atol=1e-5, msg=k)
    start = _autoencoder().state_dict()
    assert any(not torch.equal(two[k], start[k]) for k in start)  # it trained
    # and the per-epoch numbers: sums over both processes' shares = sums over the global batch
    for a, b in zip(r0["autoencoder_history"], h.records):
        for key in ("train_elbo", "train_reconstruction"):
            assert a[key] == pytest.approx(b[key], rel=1e-5)
    assert r0["autoencoder_history"] == r1["autoencoder_history"]


def test_rank_0_checkpoints_resume_exactly_and_only_rank_0_writes(two_processes):
    tmp, (r0, r1) = two_processes
    assert r0["vae_resumed"] == r0["vae_once"] == r1["vae_resumed"]
    assert sorted(p.name for p in (tmp / "checkpoints").iterdir()) == ["once.pt", "resumed.pt"]  # no temporaries
    state = vt.train.load_checkpoint(tmp / "checkpoints" / "once.pt")  # the digest holds
    assert state["settings"]["world_size"] == 2 and len(state["noise_generators"]) == 2
    assert not torch.equal(*state["noise_generators"])


def test_a_resume_at_another_world_size_is_refused(two_processes):
    tmp, (r0, r1) = two_processes
    # 2-process checkpoint, 1 process
    with pytest.raises(ResumeMismatchError, match=r"world_size=2.*--nproc-per-node 2"):
        vt.fit(_vae(), _data(), epochs=4, checkpoint=tmp / "checkpoints" / "once.pt", **FIT)
    # 1-process checkpoint, 2 processes: rank 0 reads it and refuses; rank 1 stops with it
    assert r0["resume_one_process_checkpoint"].startswith("ResumeMismatchError")
    assert "world_size=1" in r0["resume_one_process_checkpoint"]
    assert r1["resume_one_process_checkpoint"].startswith("DistributedError: process 0 of 2 failed")
    assert "world_size=1" in r1["resume_one_process_checkpoint"]


def test_every_process_fails_together(two_processes):
    _, (r0, r1) = two_processes
    # bad data on rank 1: rank 1 raises the DataError, rank 0 stops naming rank 1 and the error
    assert r1["bad_data_on_rank_1"].startswith("DataError") and "NaN" in r1["bad_data_on_rank_1"]
    assert r0["bad_data_on_rank_1"].startswith("DistributedError: process 1 of 2 failed")
    assert "NaN" in r0["bad_data_on_rank_1"]
    # valid but different data: both refuse, naming what differs
    for r in (r0, r1):
        assert r["other_data_on_rank_1"].startswith("DistributedError") and "training images" in r[
            "other_data_on_rank_1"]
    # a loss that turns NaN on rank 1 only: both stop at the same step
    assert r0["nan_loss_on_rank_1"] == r1["nan_loss_on_rank_1"]
    assert r0["nan_loss_on_rank_1"].startswith("NonFiniteLossError") and "step 1" in r0["nan_loss_on_rank_1"]
    # a checkpoint rank 0 cannot write stops both after the epoch
    assert not r0["unwritable_checkpoint"].startswith(("ok", "DistributedError"))
    assert r1["unwritable_checkpoint"].startswith("DistributedError: process 0 of 2 failed")
    assert "a_file" in r0["unwritable_checkpoint"] and "a_file" in r1["unwritable_checkpoint"]
    assert r0["after"] == r1["after"] == "ok"


# ----------------------------------------------------------------------------- the command line (torchrun)

def _torchrun(args, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CI": "true"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "vae_tutorial", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=DEADLINE)


TRAIN = ["train", "--subset", "256", "--hidden", "16", "--latent-dim", "2", "--test-images", "64"]


def test_torchrun_trains_a_run_folder_that_rank_0_writes(tmp_path, capsys):
    run = tmp_path / "run"
    p = _torchrun([*TRAIN, "--epochs", "2", "--out", str(run)], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.splitlines()
    assert sum(line.startswith("training a mlp VAE") for line in lines) == 1  # rank 0 prints, once
    assert "2 processes (global batch 128)" in p.stdout
    assert [line.split()[1] for line in lines if line.startswith("epoch")] == ["1/2", "2/2"]
    assert sorted(q.name for q in run.iterdir()) == [".vae_tutorial-run.json", "checkpoint.pt", "config.json"]
    model, _ = cli.load_run(run)  # evaluate and sample read it as any run
    assert sum(q.numel() for q in model.parameters()) == 2244
    # one process cannot resume it (each process's noise generator is in the checkpoint)
    assert cli.main([*TRAIN, "--epochs", "3", "--out", str(run)]) == 1
    assert "--nproc-per-node 2" in capsys.readouterr().err


def test_torchrun_fails_every_process_with_one_error_line(tmp_path):
    run = tmp_path / "mine"
    run.mkdir()
    (run / "notes.txt").write_text("the user's")
    p = _torchrun([*TRAIN, "--epochs", "1", "--out", str(run)], tmp_path)
    assert p.returncode != 0
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert any("did not write (notes.txt)" in e and "process" not in e for e in errors)  # rank 0
    assert any(e.startswith("error: process 0 of 2 failed") for e in errors)  # rank 1
    assert sorted(q.name for q in run.iterdir()) == ["notes.txt"]


def test_the_benchmark_refuses_a_loaded_machine(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import ddp  # benchmarks/ddp.py

    monkeypatch.setattr(ddp, "load_average", lambda: 1e6)  # far above one per core
    assert ddp.main(["--out", str(tmp_path / "ddp.json")]) == 2
    assert not list(tmp_path.iterdir())
