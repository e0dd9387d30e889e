"""The benchmark scripts run end to end (their ``--quick`` modes) and write the JSON the Results page reads.

Smoke tests, not measurements: they check that each script runs from a clone and that its
results file holds what ``book/results.ipynb`` renders, with numbers that are consistent
with each other. The measured numbers come from the full runs (see ``benchmarks/``).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import book_runtime  # noqa: E402
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
    assert r["speedup_fit_over_examples"] == pytest.approx(fit / ex, rel=1e-9)
    fl = r["flops"]
    # the fraction of peak is achieved FLOP/s over peak FLOP/s, in both counts
    for count in ("3x", "exact"):
        assert 0 < fl[f"fraction_of_peak_{count}"] == pytest.approx(
            fl[f"fit_achieved_flop_per_s_{count}"] / fl[f"mm_peak_flop_per_s_{count}"])
    assert fl["per_sample_step_exact"] < fl["per_sample_step_3x_forward"] == 3 * fl["per_sample_forward"]
    assert r["conv_vae_cpu"]["samples_per_s"] > 0


def test_quality_quick(tmp_path, fashion_mnist_present):
    out = tmp_path / "quality.json"
    assert quality.main(["--quick", "--rows", "peer,mlp", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    _machine_ok(r["machine"])
    assert r["quick"] is True and r["test_n"] == 500 and r["k"] == 10
    # one training run serves both budgets: a snapshot at the smaller, the run at the larger
    assert [(row["name"], row["budget_minutes"]) for row in r["rows"]] == [
        ("peer", None), ("mlp", 0.05), ("mlp", 0.1)]
    for row in r["rows"]:
        # IWAE with k ≥ 1 is a tighter bound than the ELBO (up to Monte Carlo noise), and
        # bits/dim is the NLL in bits spread over the 784 pixels
        assert math.isfinite(row["test_nll"]) and 0 < row["test_nll"] < row["test_neg_elbo"] + 1.0
        assert row["bits_per_dim"] == pytest.approx(row["test_nll"] / (784 * math.log(2)))
        assert 0 <= row["active_units"] <= row["latent_dim"] and row["epochs"] >= 1
        # (times are rounded to 0.1 s: a quick evaluation may round to 0.0)
        assert row["train_cpu_seconds"] > 0 and row["eval_wall_seconds"] >= 0
    assert r["rows"][0]["parameters"] == 652_824  # the pytorch/examples 784-400-20 model
    small, large = r["rows"][1:]
    # the budget is CPU time on 2 cores. (Whether the last epoch ended inside it is not
    # asserted: the rule predicts the next epoch from the longest so far, and on a loaded
    # machine one epoch can cost several times another, so that would test the machine.)
    for row in (small, large):
        assert row["budget_cpu_seconds"] == pytest.approx(60 * 2 * row["budget_minutes"])
    assert small["epochs"] <= large["epochs"] and small["train_cpu_seconds"] <= large["train_cpu_seconds"]
    # the literature anchors are stored once, in the script, and copied into the results
    assert r["literature"] == quality.LITERATURE
    assert {t["budget_minutes"]: t["target_nats"] for t in r["targets"]} == quality.TARGETS
    assert min(x["test_nll"] for x in r["literature"]["rows"]) == 223.26


def test_book_runtime_one_chapter(tmp_path):
    out = tmp_path / "book_runtime.json"
    chapter = ROOT / "book" / "03_kl.ipynb"
    assert book_runtime.main([str(chapter), "--out", str(out), "--timeout", "600"]) == 0
    r = json.loads(out.read_text())
    _machine_ok(r["machine"])
    assert list(r["chapters"]) == ["03_kl"] and r["chapters"]["03_kl"] > 0
    assert r["total_seconds"] == pytest.approx(sum(r["chapters"].values()), abs=0.11)


def test_write_result_is_all_or_nothing(tmp_path):
    out = tmp_path / "results" / "x.json"
    write_result(out, {"a": 1})
    with pytest.raises(TypeError):
        write_result(out, {"a": object()})  # not JSON: fails before anything is written
    assert json.loads(out.read_text()) == {"a": 1}
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.json"]
