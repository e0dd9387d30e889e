"""Execute every chapter of the book and record its wall time.

Usage: ``python benchmarks/book_runtime.py [--jobs 2] [--out benchmarks/results/book_runtime.json] [chapters...]``

Each notebook runs in a fresh kernel (as the book build and nbval do), with ``CI=true`` so
progress bars are off, and with its exercises' solutions executed, as in the build. Every
kernel runs PyTorch and its BLAS on one thread (``OMP_NUM_THREADS=1``, as CI does), and
``--jobs`` chapters run at a time (CI runs two on its 2 cores). The result records each
chapter's wall time, their sum (``total_seconds``: the book on one thread, the number CI's
budget rule uses), the wall time of the whole run (``elapsed_seconds``), the chapters
that failed and the chapters of the book that were not run; only a run of every chapter
without a failure gives a total for the whole book (``complete``).

A busy machine makes every chapter slower. The 1-minute load average is recorded before
and after the run; above one per core (``os.cpu_count()``) the run is refused before it
starts, unless ``--allow-load``, and a result measured under such a load says so
(``loaded``). Our own kernels add up to ``--jobs`` to the load after the run.

``--from-cache DIR`` executes nothing: it reads the execution times that the book build's
execution cache (``_build/.jupyter_cache``) recorded for the chapters as they are now, each run
in a fresh kernel on one thread; ``--jobs`` then states how many the build ran at a time
(``tools/exec_cache.py`` runs two, myst-nb one). The load during that build was not recorded,
so such a result judges no target.

Target on a 2-core CPU: the whole book in at most 15 minutes on one thread.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, load_average, refuse_loaded, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_CPU_MINUTES = 15


def book_chapters() -> list[Path]:
    """The book's chapters (``book/NN_*.ipynb``), in order."""
    return sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


def run(path: str, timeout: int) -> tuple[str, float, float, str | None]:
    """Execute one notebook in a fresh kernel: ``(stem, wall s, CPU s of the kernel, error or None)``."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(path).parent)}})
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    error = None
    try:
        client.execute()
    except Exception as e:  # a failing chapter is recorded, and the others still run
        error = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"[:300]
    seconds = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the kernel, once it has exited
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return Path(path).stem, seconds, cpu, error


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*", help="notebooks to run (default: every chapter, book/NN_*.ipynb)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "book_runtime.json"))
    ap.add_argument("--timeout", type=int, default=1200, help="per-notebook timeout in seconds")
    ap.add_argument("--jobs", type=int, default=1, help="chapters at a time, each kernel on one thread "
                                                        "(default %(default)s; CI runs 2)")
    ap.add_argument("--from-cache", default=None, metavar="DIR",
                    help="execute nothing: read the times the book build's execution cache recorded")
    ap.add_argument("--allow-load", action="store_true",
                    help="run even if the load average is above one per core (the result is flagged)")
    args = ap.parse_args(argv)
    os.environ.setdefault("CI", "true")
    # Solution cells run, as in the book build and under nbval (vae_tutorial/display/notebook.py).
    os.environ.setdefault("VAE_TUTORIAL_SOLUTIONS", "run")
    # One thread per kernel, as in CI (.ci/run); the kernels inherit this environment.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    cores = os.cpu_count() or 1
    if args.from_cache:
        return from_cache(Path(args.from_cache), args.out, args.jobs)
    before = load_average()
    if refuse_loaded(before, allow=args.allow_load):
        return 2
    chapters = [Path(c).resolve() for c in args.chapters] or book_chapters()
    times, cpu, failed = {}, {}, {}
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run, str(p), args.timeout) for p in chapters]
        for future in as_completed(futures):
            stem, seconds, cpu_s, error = future.result()
            if error:
                failed[stem] = {"seconds": round(seconds, 1), "error": error}
                print(f"{stem:28s} FAILED after {seconds:.1f} s: {error}", flush=True)
            else:
                times[stem], cpu[stem] = round(seconds, 1), round(cpu_s, 1)
                print(f"{stem:28s} {seconds:7.1f} s", flush=True)
    elapsed = time.perf_counter() - start
    after = load_average()
    order = [p.stem for p in chapters]
    times = {s: times[s] for s in order if s in times}
    cpu = {s: cpu[s] for s in order if s in cpu}
    missing = [p.stem for p in book_chapters() if p.stem not in times and p.stem not in failed]
    total = sum(times.values())
    complete = not failed and not missing
    loaded = max(before, after) > cores
    print(f"{'total':28s} {total:7.1f} s  ({total / 60:.1f} min on one thread; {elapsed / 60:.1f} min of wall "
          f"time, {args.jobs} at a time; target on a 2-core CPU: ≤ {TARGET_CPU_MINUTES} min)"
          + ("" if complete else f"; not the whole book: failed {sorted(failed)}, not run {missing}"))
    print(f"load average {before:.2f} before, {after:.2f} after, on {cores} cores"
          + (": LOADED, the times are slower than on an idle machine" if loaded else ""))
    result = {"machine": describe(), "chapters": times, "total_seconds": round(total, 1),
              "elapsed_seconds": round(elapsed, 1), "jobs": args.jobs, "threads_per_kernel": 1,
              "kernel_cpu_seconds": cpu, "failed": failed, "not_run": missing, "complete": complete,
              "load_average_before": round(before, 2), "load_average_after": round(after, 2),
              "loaded": loaded, "target_minutes_cpu": TARGET_CPU_MINUTES}
    write_result(args.out, result)
    print("wrote", args.out)
    return 0


def from_cache(folder: Path, out: str, jobs: int) -> int:
    """Write the result from the execution times the build's cache holds for today's chapters."""
    import nbformat
    from jupyter_cache import get_cache

    cache = get_cache(str(folder))
    times, not_run = {}, []
    for nb_path in book_chapters():
        try:
            record = cache.match_cache_notebook(nbformat.read(nb_path, as_version=4))
        except KeyError:  # changed since the build executed it, or never executed
            not_run.append(nb_path.stem)
            continue
        seconds = (record.data or {}).get("execution_seconds")
        if seconds is None:
            not_run.append(nb_path.stem)
            continue
        times[nb_path.stem] = round(float(seconds), 1)
    total = sum(times.values())
    result = {"machine": describe(), "source": f"execution cache of the book build ({folder.name})",
              "chapters": times, "total_seconds": round(total, 1), "jobs": jobs, "threads_per_kernel": 1,
              "failed": {}, "not_run": not_run, "complete": not not_run,
              "target_minutes_cpu": TARGET_CPU_MINUTES}
    print(f"{len(times)} chapters, {total / 60:.1f} min on one thread"
          + (f"; not in the cache as they are now: {not_run}" if not_run else ""))
    write_result(out, result)
    print("wrote", out)
    return 0 if not not_run else 1


if __name__ == "__main__":
    sys.exit(main())
