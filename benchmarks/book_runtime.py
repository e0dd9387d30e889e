"""Execute every chapter of the book and record its wall time.

Usage: ``python benchmarks/book_runtime.py [--out benchmarks/results/book_runtime.json] [chapters...]``

Each notebook runs in a fresh kernel (as the book build and nbval do), with ``CI=true`` so
progress bars are off, and with its exercises' solutions executed, as in the build. Target on a 2-core CPU: the whole book in at most 15 minutes.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_CPU_MINUTES = 15


def run(path: Path, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*", help="notebooks to run (default: book/*.ipynb)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "book_runtime.json"))
    ap.add_argument("--timeout", type=int, default=1200, help="per-notebook timeout in seconds")
    args = ap.parse_args(argv)
    os.environ.setdefault("CI", "true")
    # Solution cells run, as in the book build and under nbval (vae_tutorial/notebook.py).
    os.environ.setdefault("VAE_TUTORIAL_SOLUTIONS", "run")
    chapters = [Path(c) for c in args.chapters] or sorted((ROOT / "book").glob("[0-9]*.ipynb"))
    times = {}
    for path in chapters:
        seconds = run(path, args.timeout)
        times[path.stem] = round(seconds, 1)
        print(f"{path.stem:28s} {seconds:7.1f} s", flush=True)
    total = sum(times.values())
    print(f"{'total':28s} {total:7.1f} s  ({total / 60:.1f} min; target on a 2-core CPU: "
          f"≤ {TARGET_CPU_MINUTES} min)")
    result = {"machine": describe(), "chapters": times, "total_seconds": round(total, 1),
              "target_minutes_cpu": TARGET_CPU_MINUTES}
    write_result(args.out, result)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
