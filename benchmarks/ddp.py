"""Data-parallel training throughput: ``vae_tutorial.fit`` on 1 process against 2 (torchrun, gloo).

Usage::

    python benchmarks/ddp.py              # 3 timed epochs of 12 800 Fashion-MNIST images per world size
    python benchmarks/ddp.py --quick      # smoke test: 2 560 images, 1 round, no JSON unless --out

The model is the pytorch/examples VAE of ``benchmarks/throughput.py`` (784-400-20 MLP,
Bernoulli, Adam 1e-3) with a global batch of 128. One run launches, side by side,
``python -m torch.distributed.run --nproc-per-node W`` for W = 1 and W = 2 on 127.0.0.1,
each process with one thread (``OMP_NUM_THREADS=1``), so W = 2 uses the machine's two cores
where W = 1 uses one. Each launch trains one untimed warm-up epoch on 512 images, then
``--rounds`` epochs of ``vt.fit`` (the whole call, DistributedDataParallel's set-up included);
rank 0 reports the seconds. Images per second are given at the median round, with the
minimum and maximum.

Speed is measured on an idle machine only: the 1-minute load average is recorded before and
after; above one per core the run refuses to start (``--allow-load`` overrides), and a result
measured under such a load is flagged ``loaded``. Results, with the machine, go to
``benchmarks/results/ddp.json``. No GPU number is measured here: on a machine with GPUs, pass
``--device cuda`` (NCCL, one process per GPU) and the JSON names the GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # vae_tutorial from a clone
from machine import describe, load_average, refuse_loaded, write_result  # noqa: E402
from throughput import BATCH, LR, _spread, mlp_vae  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "ddp.json"
WORLD_SIZES = (1, 2)


def worker(subset: int, rounds: int, device: str, result: Path) -> int:
    """One process of a launch: warm up, then time ``rounds`` epochs; rank 0 writes the seconds."""
    import vae_tutorial as vt
    from vae_tutorial import distributed

    torch.set_num_threads(1)
    train = vt.load_dataset("fashion-mnist", "train").subset(subset)
    w = distributed.init_from_environment()
    vt.fit(mlp_vae(), train.subset(512), epochs=1, batch_size=BATCH, lr=LR, device=device, progress=False)
    seconds = []
    for r in range(rounds):
        torch.manual_seed(r)
        model = mlp_vae()
        t0 = time.perf_counter()
        vt.fit(model, train, epochs=1, batch_size=BATCH, lr=LR, device=device, seed=r, progress=False)
        seconds.append(time.perf_counter() - t0)  # fit ends with a collective: every process is done
    if w.is_main:
        result.write_text(json.dumps({"world_size": w.size, "seconds": seconds}))
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world_size: int, subset: int, rounds: int, device: str, timeout: float) -> list[float]:
    """Seconds per timed epoch of one ``torchrun --nproc-per-node world_size`` launch."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CI": "true",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(world_size),
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), str(Path(__file__).resolve()),
               "--worker", "--subset", str(subset), "--rounds", str(rounds), "--device", device,
               "--result", str(result)]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        if p.returncode != 0 or not result.exists():
            raise SystemExit(f"error: the {world_size}-process launch failed (exit {p.returncode}):\n"
                             f"{p.stderr[-2000:]}")
        return json.loads(result.read_text())["seconds"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 560 images, 1 round, no JSON unless --out")
    ap.add_argument("--subset", type=int, default=None, help="training images per epoch (default 12 800)")
    ap.add_argument("--rounds", type=int, default=None, help="timed epochs per world size (default 3; 1 with --quick)")
    ap.add_argument("--device", default="cpu", help="cpu (gloo, default) or cuda (NCCL, one process per GPU)")
    ap.add_argument("--out", default=None, help=f"results JSON (default {DEFAULT_OUT.relative_to(ROOT)}; "
                                                "none with --quick)")
    ap.add_argument("--allow-load", action="store_true",
                    help="measure even if the load average is above one per core (the result is flagged)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds allowed for one launch (default 900)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    subset = args.subset or (2560 if args.quick else 12800)
    rounds = args.rounds or (1 if args.quick else 3)
    if args.worker:
        return worker(subset, rounds, args.device, Path(args.result))
    out = Path(args.out) if args.out else (None if args.quick else DEFAULT_OUT)

    cores = os.cpu_count() or 1
    load_before = load_average()
    if refuse_loaded(load_before, allow=args.quick or args.allow_load):
        return 2
    print(f"{subset} Fashion-MNIST images, global batch {BATCH}, {rounds} rounds, device {args.device}; "
          f"load average {load_before:.2f} on {cores} cores", flush=True)
    runs = {}
    for w in WORLD_SIZES:
        seconds = launch(w, subset, rounds, args.device, args.timeout)
        runs[w] = _spread(seconds, subset)
        print(f"{w} process{'es' if w > 1 else ''}: {runs[w]['samples_per_s']:8.0f} images/s "
              f"(min {runs[w]['samples_per_s_min']:.0f}, max {runs[w]['samples_per_s_max']:.0f})", flush=True)
    load_after = load_average()
    loaded = max(load_before, load_after) > cores
    speedup = runs[2]["samples_per_s"] / runs[1]["samples_per_s"]
    machine = describe()
    machine["torch_threads"] = 1  # per process: OMP_NUM_THREADS=1 in every launch
    result = {
        "benchmark": "vt.fit epochs under torchrun, 1 vs 2 processes (pytorch/examples VAE 784-400-20, "
                     "Bernoulli, Adam 1e-3, global batch 128)",
        "machine": machine,
        "load_average_before": load_before, "load_average_after": load_after, "cores": cores,
        "loaded": loaded,
        "settings": {"dataset": "fashion-mnist", "train_images": subset, "global_batch_size": BATCH, "lr": LR,
                     "rounds": rounds, "device": args.device,
                     "backend": "nccl" if args.device.startswith("cuda") else "gloo",
                     "threads_per_process": 1, "quick": args.quick,
                     "statistic": "images/s at the median round (min and max kept); one launch per "
                                  "world size, 1 process first, each after an untimed warm-up epoch"},
        "processes": {str(w): r for w, r in runs.items()},
        "speedup_2_over_1": speedup,
    }
    print(f"speed-up of 2 processes over 1: {speedup:.2f}x; load average {load_before:.2f} before, "
          f"{load_after:.2f} after" + (": LOADED, every number is lower than on an idle machine" if loaded else ""))
    if out is not None:
        write_result(out, result)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
