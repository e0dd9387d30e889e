"""CI keeps landing as the book grows: the chapters' measured run times stay within budget.

CI executes every chapter three times (nbval, the build that serves both editions, the
Colab-like run), two chapters at a time on a 2-core machine, so a chapter that takes T seconds
on one thread costs CI about 3T/2 seconds. The rules (README, "Continuous integration"):

* a chapter takes at most ``CHAPTER_SECONDS`` = 120 s on one thread, so that a new chapter adds
  at most about 3 minutes to CI;
* the whole book takes at most ``BOOK_MINUTES`` = 15 minutes on one thread, which keeps CI
  within 40 minutes (the three executions take about 3 × 15 / 2 = 22.5 of them);
* every chapter has been measured: `python benchmarks/book_runtime.py` (a new chapter is
  measured before it lands).

The numbers come from ``benchmarks/results/book_runtime.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "benchmarks" / "results" / "book_runtime.json"
CHAPTER_SECONDS = 120
BOOK_MINUTES = 15


def _measured() -> dict[str, float]:
    return json.loads(RUNTIME.read_text(encoding="utf-8"))["chapters"]


def test_every_chapter_has_a_measured_run_time():
    chapters = {p.stem for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb")}
    missing = sorted(chapters - set(_measured()))
    assert not missing, (f"no run time in {RUNTIME.relative_to(ROOT)} for {', '.join(missing)}: "
                         "run `python benchmarks/book_runtime.py` and commit the result")


def test_each_chapter_fits_its_ci_budget():
    over = {name: s for name, s in _measured().items() if s > CHAPTER_SECONDS}
    assert not over, (f"chapters over {CHAPTER_SECONDS} s on one thread (each adds more than about 3 "
                      f"minutes to CI): {over}; make them cheaper (fewer images or epochs)")


def test_the_book_fits_its_ci_budget():
    total = sum(_measured().values())
    assert total <= 60 * BOOK_MINUTES, (
        f"the chapters take {total / 60:.1f} min on one thread, over the book's {BOOK_MINUTES} min: "
        "CI would pass 40 minutes")
