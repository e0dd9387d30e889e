"""What every benchmark shares: a description of the machine it ran on, so every results file says
where its numbers come from, the machine's load, and the atomic write of that results file."""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict:
    """CPU (model and vector ISA), core count, GPU (if any), Python, PyTorch and the date, as a JSON-able dict."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        # the widest vector instruction set PyTorch's kernels use here (AVX2, AVX512, ...):
        # two "2-core" machines can differ fourfold in matmul speed
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def load_average() -> float:
    """The 1-minute load average (runnable processes, averaged); NaN where the OS has none.

    Above one per core (``os.cpu_count()``), other programs compete for the cores and every
    timing is slower than on an idle machine: the timing benchmarks refuse to start, or flag
    their result.
    """
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # Windows
        return float("nan")


def refuse_loaded(load: float, allow: bool) -> bool:
    """True (after saying why on stderr) when ``load`` is above one per core and not ``allow``ed:
    the timing benchmarks then exit with status 2 instead of measuring the other programs."""
    cores = os.cpu_count() or 1
    if load > cores and not allow:
        print(f"refused: load average {load:.2f} is above one per core ({cores} cores): the timings "
              "would measure the other programs. Run on an idle machine, or pass --allow-load (the result "
              "is then flagged).", file=sys.stderr)
        return True
    return False


def write_result(path: str | os.PathLike, result: dict) -> None:
    """Write ``result`` as JSON to ``path`` whole or not at all (temporary file, then rename).

    A benchmark killed while writing leaves the previous results file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
