"""``fit``'s training throughput before and after a change, side by side in one process.

Usage::

    python benchmarks/fit_before_after.py                     # before = the commit before issue 21's work
    python benchmarks/fit_before_after.py --before <commit>   # any other commit
    python benchmarks/fit_before_after.py --quick             # smoke test: small subset, 1 round, no JSON

The package at ``--before`` is exported from git (``git archive``) into a temporary folder and
imported under another name, so both versions of :func:`vae_tutorial.fit` run in this one
process, on the same data, alternating which goes first each round: machine noise hits both
alike and the ratio is what is reported. The model is the book's MLP VAE of
benchmarks/throughput.py (784-400-20, Bernoulli, Adam 1e-3, batch 128), one epoch per call.

Issue 21 asks that the validation added in its second red-team round (shapes, dtypes,
identities, run-folder checks, DDP plumbing) does not slow training. Like the other speed
benchmarks this refuses to start with a load above one per core (``--allow-load`` overrides,
and the result says ``loaded``). Results: ``benchmarks/results/fit_before_after.json``.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, load_average, refuse_loaded, write_result  # noqa: E402

import vae_tutorial as vt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "fit_before_after.json"
DEFAULT_BEFORE = "e2faf7a^"  # the last commit before issue 21's round-two validation


def import_package_at(commit: str, folder: Path):
    """``vae_tutorial`` as it was at ``commit``, imported as module ``vae_tutorial_before``."""
    archive = subprocess.run(["git", "archive", commit, "vae_tutorial"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    init = folder / "vae_tutorial" / "__init__.py"
    spec = importlib.util.spec_from_file_location("vae_tutorial_before", init,
                                                  submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["vae_tutorial_before"] = module
    spec.loader.exec_module(module)
    return module


def one_epoch(package, images: torch.Tensor) -> float:
    """Seconds for one epoch of ``package.fit`` on a fresh seeded MLP VAE (set-up included)."""
    torch.manual_seed(0)
    model = package.VAE(package.MLPEncoder((1, 28, 28), [400], 20), package.MLPDecoder(20, [400], (1, 28, 28)))
    start = time.perf_counter()
    package.fit(model, images, epochs=1, batch_size=128, lr=1e-3, progress=False)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=DEFAULT_BEFORE, help=f"git commit to compare with (default {DEFAULT_BEFORE})")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=20_000, help="training images per epoch")
    parser.add_argument("--quick", action="store_true", help="2 560 images, 1 round, no JSON unless --out")
    parser.add_argument("--allow-load", action="store_true", help="run even on a busy machine (result flagged)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.images = 1, 2560
    cores = os.cpu_count() or 1
    load_before = load_average()
    if refuse_loaded(load_before, allow=args.allow_load):
        return 2

    data = vt.load_dataset("fashion-mnist", split="train").subset(args.images)
    images = data.images
    with tempfile.TemporaryDirectory() as folder:
        before = import_package_at(args.before, Path(folder))
        one_epoch(before, images[:1280])  # warm-up: first-call costs (allocators, BLAS) paid once, for both
        one_epoch(vt, images[:1280])
        times = {"before": [], "after": []}
        for r in range(args.rounds):
            order = [("before", before), ("after", vt)]
            for name, package in (order if r % 2 == 0 else order[::-1]):
                times[name].append(one_epoch(package, images))
                print(f"round {r + 1}: {name:6s} {len(images) / times[name][-1]:8.0f} images/s", flush=True)

    load_after = load_average()
    ratios = [b / a for b, a in zip(times["before"], times["after"])]  # > 1: after is faster
    summary = {name: {"seconds": t, "images_per_second": {
        "min": len(images) / max(t), "median": len(images) / statistics.median(t), "max": len(images) / min(t)}}
        for name, t in times.items()}
    result = {
        "benchmark": "fit, one epoch, MLP VAE 784-400-20, batch 128: before vs after, same process",
        "before": args.before,
        "after": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip(),
        "images": len(images), "rounds": args.rounds, **summary,
        "speed_ratio_after_over_before": {"min": min(ratios), "median": statistics.median(ratios), "max": max(ratios)},
        "load_average": {"before": load_before, "after": load_after},
        "loaded": max(load_before, load_after) > cores,
        "machine": describe(),
    }
    r = result["speed_ratio_after_over_before"]
    print(f"after / before speed: median {r['median']:.3f} (min {r['min']:.3f}, max {r['max']:.3f}) over "
          f"{args.rounds} rounds; load {load_before:.1f} → {load_after:.1f} on {cores} cores"
          + (" (LOADED: not a valid comparison)" if result["loaded"] else ""))
    out = args.out or (None if args.quick else DEFAULT_OUT)
    if out is not None:
        write_result(out, result)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
