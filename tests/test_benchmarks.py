"""The benchmark scripts run end to end (their ``--quick`` modes) and write the JSON the Results page reads.

Smoke tests, not measurements: they check that each script runs from a clone and that its
results file holds what ``book/results.ipynb`` renders, with numbers that are consistent
with each other. The measured numbers come from the full runs (see ``benchmarks/``).
"""
from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import book_runtime  # noqa: E402
import fit_before_after  # noqa: E402
import quality  # noqa: E402
import throughput  # noqa: E402
from machine import write_result  # noqa: E402


def _machine_ok(m):
    assert m["cores"] >= 1 and m["torch_threads"] >= 1
    assert m["cpu"] and m["torch"] and m["python"] and m["date"][:2] == "20"
    assert "cpu_capability" in m


def test_throughput_quick(tmp_path, fashion_mnist_present):
    out = tmp_path / "throughput.json"
    assert throughput.main(["--quick", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    _machine_ok(r["machine"])
    fit, ex = r["fit"]["samples_per_s"], r["pytorch_examples_loop"]["samples_per_s"]
    assert fit > 0 and ex > 0
    # ratios are paired within a round (the machine's speed drifts between rounds), then summarised
    per_round = [e / f for f, e in zip(r["fit"]["seconds"], r["pytorch_examples_loop"]["seconds"])]
    assert r["speedup_per_round"] == pytest.approx(per_round, rel=1e-9)
    assert r["speedup_fit_over_examples"] == pytest.approx(statistics.median(per_round), rel=1e-9)
    assert r["speedup_min_median_max"] == pytest.approx([min(per_round), statistics.median(per_round),
                                                         max(per_round)])
    fl = r["flops"]
    # with one round the fraction of peak is achieved FLOP/s over peak FLOP/s, in both counts
    assert r["settings"]["rounds"] == 1
    for count in ("3x", "exact"):
        assert 0 < fl[f"fraction_of_peak_{count}"] == pytest.approx(
            fl[f"fit_achieved_flop_per_s_{count}"] / fl[f"mm_peak_flop_per_s_{count}"])
    lo, med, hi = fl["fraction_of_peak_exact_min_median_max"]
    assert lo <= med <= hi and med == pytest.approx(fl["fraction_of_peak_exact"])
    assert fl["per_sample_step_exact"] < fl["per_sample_step_3x_forward"] == 3 * fl["per_sample_forward"]
    assert r["conv_vae_cpu"]["samples_per_s"] > 0
    # every round is kept with its spread; the load decides the flag
    for loop in (r["fit"], r["pytorch_examples_loop"]):
        assert loop["min_seconds"] <= loop["median_seconds"] <= loop["max_seconds"]
        assert loop["samples_per_s_min"] <= loop["samples_per_s"] <= loop["samples_per_s_max"]
    assert len(r["speedup_per_round"]) == r["settings"]["rounds"]
    assert r["loaded"] == (max(r["load_average_before"], r["load_average_after"]) > r["cores"])


def test_fit_before_after_runs_two_versions_in_one_process(tmp_path, fashion_mnist_present):
    # HEAD against itself (a clone may be shallow): the old version is imported from git's copy
    out = tmp_path / "before_after.json"
    assert fit_before_after.main(["--quick", "--allow-load", "--before", "HEAD", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    _machine_ok(r["machine"])
    assert "vae_tutorial_before" in sys.modules and sys.modules["vae_tutorial_before"].fit is not None
    assert r["images"] == 2560 and len(r["before"]["seconds"]) == len(r["after"]["seconds"]) == 1
    ratio = r["before"]["seconds"][0] / r["after"]["seconds"][0]
    assert r["speed_ratio_after_over_before"]["median"] == pytest.approx(ratio, rel=1e-9)


def test_timing_benchmarks_refuse_a_loaded_machine(tmp_path, monkeypatch, fashion_mnist_present):
    # above one runnable process per core the timings would measure the other programs
    monkeypatch.setattr(throughput, "load_average", lambda: 1e6)
    monkeypatch.setattr(book_runtime, "load_average", lambda: 1e6)
    assert throughput.main(["--rounds", "1", "--subset", "256", "--out", str(tmp_path / "t.json")]) == 2
    assert book_runtime.main([str(ROOT / "book" / "03_kl.ipynb"), "--out", str(tmp_path / "b.json")]) == 2
    assert not list(tmp_path.iterdir())


def test_quality_quick(tmp_path, fashion_mnist_present):
    out = tmp_path / "quality.json"
    assert quality.main(["--quick", "--rows", "peer,mlp", "--threads", "1", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    _machine_ok(r["machine"])
    assert r["quick"] is True and r["test_n"] == 500 and r["k"] == 10
    # one training run serves both budgets: a snapshot at the smaller, the run at the larger;
    # the peer recipe runs on the same clock as the book's models
    assert [(row["name"], row["budget_minutes"]) for row in r["rows"]] == [
        ("peer", 0.05), ("peer", 0.1), ("mlp", 0.05), ("mlp", 0.1)]
    assert all(row["threads"] == 1 for row in r["rows"]) and r["threads"] == 1
    for row in r["rows"]:
        # IWAE with k ≥ 1 is a tighter bound than the ELBO (up to Monte Carlo noise), and
        # bits/dim is the NLL in bits spread over the 784 pixels
        assert math.isfinite(row["test_nll"]) and 0 < row["test_nll"] < row["test_neg_elbo"] + 1.0
        assert row["bits_per_dim"] == pytest.approx(row["test_nll"] / (784 * math.log(2)))
        assert 0 <= row["active_units"] <= row["latent_dim"] and row["epochs"] >= 1
        # (times are rounded to 0.1 s: a quick evaluation may round to 0.0)
        assert row["train_cpu_seconds"] > 0 and row["eval_wall_seconds"] >= 0
    assert r["rows"][0]["parameters"] == 652_824  # the pytorch/examples 784-400-20 model
    # the budget is CPU time on 2 cores. (Whether the last epoch ended inside it is not
    # asserted: the rule predicts the next epoch from the longest so far, and on a loaded
    # machine one epoch can cost several times another, so that would test the machine.)
    for small, large in (r["rows"][:2], r["rows"][2:]):
        for row in (small, large):
            assert row["budget_cpu_seconds"] == pytest.approx(60 * 2 * row["budget_minutes"])
        assert small["epochs"] <= large["epochs"] and small["train_cpu_seconds"] <= large["train_cpu_seconds"]
    # the literature anchors are stored once, in the script, and copied into the results
    assert r["literature"] == quality.LITERATURE
    assert {t["budget_minutes"]: t["target_nats"] for t in r["targets"]} == quality.TARGETS
    assert min(x["test_nll"] for x in r["literature"]["rows"]) == 223.26
    assert r["split"].startswith("all 2,000 training images; no validation split")


def test_quality_merges_another_k_into_the_same_rows(tmp_path):
    row = {"name": "iwae", "budget_minutes": 10.0, "epochs": 42, "test_nll": 232.0,
           "eval_cpu_seconds": 200.0, "eval_wall_seconds": 300.0}
    results = [dict(row), dict(row, budget_minutes=None, test_nll=233.0)]
    quality._add_nll_at_k(results, {"k": 5000, "rows": [dict(row, test_nll=231.5, eval_cpu_seconds=1000.0)]}, "f")
    assert results[0]["test_nll"] == 232.0 and results[0]["test_nll_k5000"] == 231.5
    assert results[0]["eval_k5000_cpu_seconds"] == 1000.0 and "test_nll_k5000" not in results[1]
    with pytest.raises(AssertionError, match="no single row"):  # another model: nothing to attach it to
        quality._add_nll_at_k(results, {"k": 5000, "rows": [dict(row, epochs=41)]}, "f")


def test_committed_quality_results_carry_the_scripts_literature():
    # the anchors and the published protocol are stored once, in the script
    for f in sorted((ROOT / "benchmarks" / "results").glob("quality*.json")):
        r = json.loads(f.read_text())
        assert r["literature"] == quality.LITERATURE, f.name
        assert {t["budget_minutes"]: t["target_nats"] for t in r["targets"]} == quality.TARGETS
        assert all("threads" in row for row in r["rows"]), f.name


def test_book_runtime_one_chapter(tmp_path):
    out = tmp_path / "book_runtime.json"
    chapter = ROOT / "book" / "03_kl.ipynb"
    assert book_runtime.main([str(chapter), "--out", str(out), "--timeout", "600", "--allow-load"]) == 0
    r = json.loads(out.read_text())
    _machine_ok(r["machine"])
    assert list(r["chapters"]) == ["03_kl"] and r["chapters"]["03_kl"] > 0
    assert r["total_seconds"] == pytest.approx(sum(r["chapters"].values()), abs=0.11)
    # one chapter is not the book: the others are listed as not run, and there is no book total
    assert r["complete"] is False and r["failed"] == {}
    assert set(r["not_run"]) == {p.stem for p in book_runtime.book_chapters()} - {"03_kl"}
    assert r["jobs"] == 1 and r["threads_per_kernel"] == 1
    assert r["loaded"] == (max(r["load_average_before"], r["load_average_after"]) > r["machine"]["cores"])


def test_book_runtime_records_a_failing_chapter_and_runs_the_others(tmp_path):
    import nbformat

    bad, good = tmp_path / "98_bad.ipynb", tmp_path / "99_good.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")]), bad)
    code = "import os\nassert os.environ['OMP_NUM_THREADS'] == '1'"  # one thread per kernel, as in CI
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), good)
    out = tmp_path / "book_runtime.json"
    assert book_runtime.main([str(bad), str(good), "--jobs", "2", "--out", str(out), "--allow-load"]) == 0
    r = json.loads(out.read_text())
    assert list(r["chapters"]) == ["99_good"] and list(r["failed"]) == ["98_bad"]
    assert "ZeroDivisionError" in r["failed"]["98_bad"]["error"] and r["complete"] is False
    assert r["jobs"] == 2 and r["elapsed_seconds"] > 0


def test_write_result_is_all_or_nothing(tmp_path):
    out = tmp_path / "results" / "x.json"
    write_result(out, {"a": 1})
    with pytest.raises(TypeError):
        write_result(out, {"a": object()})  # not JSON: fails before anything is written
    assert json.loads(out.read_text()) == {"a": 1}
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.json"]
