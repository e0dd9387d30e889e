"""Model quality in nats under a training budget, next to the published numbers.

Data: dynamically binarised Fashion-MNIST, all 60k training images (no validation split,
no early stopping), 10k test images. Every model is scored by
``vae_tutorial.evaluate_model`` on the full test set: test −ELBO, test NLL from the IWAE
bound with ``k = 1000`` samples (``--k``; nats and bits/dim), active units; seed 0, so
every model sees the same binarised test images.

Budget clock. A budget of ``M`` minutes "on 2 cores" is ``M × 60 × 2`` seconds of CPU
time of the training process (``time.process_time()``, which counts all of its threads),
with PyTorch using ``--threads`` threads (default 2; each row records its count). On a
shared machine, other processes then cost wall time but not budget (threads that spin
while they wait for a core make the clock conservative: with one thread an epoch costs
fewer CPU seconds than with two, so a one-thread run trains more epochs in the same
budget). Everything a model's training does counts: building the model, every ``fit``
call or epoch of its own loop, checkpoints between epochs (and compilation, were it
used); the evaluation does not. Each row records its CPU and wall seconds.

One run per model serves every budget: the model trains whole epochs while the next one
(estimated at 1.05 × the longest so far) still fits in the largest budget, and at each
smaller budget the epochs trained so far are snapshotted and evaluated. The learning-rate
schedule does not depend on the budget (a constant, or an exponential decay in epochs),
so the snapshot at 10 minutes is exactly the model a 10-minute run would have produced.

Rows: the pytorch/examples recipe (784-400-20, Adam 1e-3, batch 128, its own DataLoader
loop; whole epochs on the same budget clock as the book's models), the book's one-layer
MLP VAE (ELBO and IWAE objectives), and hierarchical VAEs (``vae_tutorial.models.hierarchical``).
Targets on a 2-core CPU: the best model within 10 minutes ≤ 228.7 nats (the literature's
fully trained one-layer VAE) and within 60 minutes ≤ 225.4 nats (its two-level
ConvHVAE); see ``LITERATURE``, which also records the published protocol.

Usage: ``python benchmarks/quality.py [--rows peer,mlp,...] [--budget-minutes 10,60]``
(``--quick`` for a smoke run on small subsets). Long runs in steps: ``--snapshots DIR``
trains and saves each budget's model (``--snapshot-epochs`` also given epochs),
``--evaluate DIR`` scores them (with ``--k``), and ``--merge`` collects results files;
a file with another ``k`` adds its NLL to the matching rows as ``test_nll_k<k>``.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer  # noqa: E402
from machine import describe, write_result  # noqa: E402

import vae_tutorial as vt  # noqa: E402
from vae_tutorial.training.timing import synchronize  # noqa: E402
from vae_tutorial.training.train import NonFiniteLossError, exponential_decay  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CORES = 2
"""The budget's cores: ``M`` minutes on 2 cores is ``M × 60 × CORES`` CPU seconds."""
TARGETS = {10.0: 228.70, 60.0: 225.38}
"""Budget (minutes on 2 cores) → target test NLL (nats): the literature's one-layer VAE and 2-level ConvHVAE."""
TARGET_MODELS = {10.0: ("1-layer MLP VAE", ["mlp", "iwae", "peer"]), 60.0: ("2-level ConvHVAE", ["convhvae"])}
"""Budget → the published model that sets its target, and the rows of this script of the same class."""

LITERATURE = {
    "source": "Norouzi, Fleet & Norouzi (2020), Exemplar VAE, NeurIPS; density estimation table",
    "key": "norouzi2020exemplar",
    "setting": "dynamically binarised Fashion-MNIST, test NLL by importance sampling with S = 5000",
    "budget": "trained up to 2,000 epochs (early stopping) on a GPU",
    # The protocol of the one-layer anchor, from the paper's released configuration
    # (github.com/sajadn/Exemplar-VAE, vae_config.txt: S=5000, training_set_size=50000,
    # early_stopping_epochs=50, epochs=2000, warmup=100, hidden_size=300, z1_size=40,
    # lr=0.0005, batch_size=100) and its models/VAE.py (GatedDense layers).
    "protocol": {
        "k": "5000",
        "split": "50,000 train + 10,000 validation images; early stopping on the validation set "
                 "(50 epochs without improvement)",
        "objective": "ELBO, KL weight warmed up over 100 epochs",
        "architecture": "gated dense layers 784-300-300-40 and back, standard normal prior",
        "optimiser": "Adam 5e-4, batch 100",
        "epochs": "up to 2,000 (early stopping)",
        "hardware": "GPU",
    },
    "rows": [
        {"model": "1-layer MLP VAE", "test_nll": 228.70, "plus_minus": 0.15},
        {"model": "VampPrior", "test_nll": 227.35},
        {"model": "2-level MLP HVAE", "test_nll": 227.37},
        {"model": "2-level ConvHVAE", "test_nll": 225.38},
        {"model": "ConvHVAE + VampPrior", "test_nll": 224.67},
        {"model": "PixelSNAIL-decoder VAE", "test_nll": 223.68},
        {"model": "best reported", "test_nll": 223.26},
    ],
}
"""The published anchors, stored once: written into quality.json and shown by the Results page."""


def peer_vae():
    """The peer's network as a ``vae_tutorial.VAE`` (for loading a saved snapshot)."""
    return peer.to_vae(peer.PeerVAE())


def book_mlp():
    return vt.VAE(vt.MLPEncoder(784, [512, 256], 32), vt.MLPDecoder(32, [256, 512], (1, 28, 28)))


def hvae_mlp():
    return vt.HierarchicalVAE.mlp((32, 16), (512, 256), inference="top_down", skip=True)


def hvae_conv():
    return vt.HierarchicalVAE.conv((32, 16), (256, 256), inference="top_down", skip=True)


DECAY = exponential_decay(1e-3, half_life=100.0, floor=1e-4)
"""1e-3 halved every 100 epochs (floor 1e-4): independent of the budget, so snapshots are exact."""

# name -> (description, model factory, fit keyword arguments); None: the peer's own training loop.
ROWS = {
    "peer": ("pytorch/examples recipe: 784-400-20, ELBO, Adam 1e-3, batch 128, its own DataLoader loop",
             peer_vae, None),
    "mlp": ("book MLP VAE: 784-512-256-32, ELBO, Adam 1e-3, batch 128", book_mlp, {}),
    "iwae": ("book MLP trained on the IWAE bound (k=5): 784-512-256-32, Adam 1e-3 halved every 100 epochs, "
             "batch 128", book_mlp, {"objective": "iwae", "iwae_k": 5, "lr": DECAY}),
    "hvae": ("2-layer MLP hierarchical VAE, top-down inference, skip decoder: 784-512-512-(z1 32)-256-256-(z2 16), "
             "ELBO, Adam 1e-3 halved every 100 epochs, batch 128", hvae_mlp, {"lr": DECAY}),
    "hvae-iwae": ("2-layer MLP hierarchical VAE as hvae, trained on the IWAE bound (k=5)", hvae_mlp,
                  {"lr": DECAY, "objective": "iwae", "iwae_k": 5}),
    "convhvae": ("2-layer conv hierarchical VAE, top-down inference, skip decoder, z (32, 16), ELBO, "
                 "Adam 1e-3 halved every 100 epochs, batch 128", hvae_conv, {"lr": DECAY}),
}


def _next_epoch_fits(epoch, cpu, longest, budget):
    """The budget rule: the first epoch always runs; another one if 1.05 × the longest so far still fits."""
    return epoch == 0 or cpu + 1.05 * longest <= budget  # 5 % margin: an epoch may take a little longer


def _stats(epoch, cpu, wall, halved=(), diverged=None):
    return {"epochs": epoch, "train_cpu_seconds": cpu, "train_wall_seconds": wall, "lr_halved_at": list(halved),
            "diverged_at_epoch": diverged, "threads": torch.get_num_threads()}


def train_peer_for_budgets(train, device, budgets_cpu_s, *, max_epochs=2000, on_snapshot=None, on_epoch=None):
    """The pytorch/examples recipe on the clock of :func:`train_for_budgets` (same rule, same callbacks).

    Its own model, optimiser and ``DataLoader`` loop (``benchmarks/peer.py``), whole epochs
    while the next one fits in the budget; each snapshot is converted to a
    ``vae_tutorial.VAE`` for the book's evaluation.
    """
    c0, w0 = time.process_time(), time.perf_counter()
    torch.manual_seed(0)
    model = peer.PeerVAE().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = peer.make_loader(train.images, train.labels, dynamic=True)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    epoch, longest = 0, 0.0
    for budget in sorted(budgets_cpu_s):
        while epoch < max_epochs and _next_epoch_fits(epoch, cpu, longest, budget):
            c0, w0 = time.process_time(), time.perf_counter()
            peer.train_epoch(model, loader, opt, device)
            synchronize(device)
            epoch += 1
            dc = time.process_time() - c0
            cpu, wall, longest = cpu + dc, wall + time.perf_counter() - w0, max(longest, dc)
            print(f"  epoch {epoch:4d}: {cpu / 60:6.1f} CPU-min, {wall / 60:6.1f} wall-min", flush=True)
            if on_epoch is not None:
                on_epoch(epoch, peer.to_vae(model), _stats(epoch, cpu, wall))
        if on_snapshot is not None:
            snap = peer.to_vae(model)
            snap.trained_epochs = epoch
            on_snapshot(budget, snap, _stats(epoch, cpu, wall))
    return peer.to_vae(model)


def _halved_after(schedule, epoch):
    """The same learning rate as ``schedule`` up to ``epoch``, half of it afterwards."""
    return lambda t: schedule(t) if t <= epoch else 0.5 * schedule(t)


def validation_elbo(model, valid, device) -> float:
    """Mean ELBO (nats per image) on the validation images, binarised once with seed 0: the selection score."""
    return float(vt.evaluate.per_example_bounds(model, valid, k=1, seed=0, device=device)["elbo"].mean())


def train_for_budgets(make_model, train, device, budgets_cpu_s, *, max_epochs=2000, on_snapshot=None,
                      on_epoch=None, lr=1e-3, valid=None, **kw):
    """Train whole epochs on the CPU-time clock; call ``on_snapshot(budget, model, stats)`` at each budget.

    ``fit`` is called once per epoch and resumes from its own checkpoint, which gives the
    same parameters as one uninterrupted ``fit`` call of that many epochs (tested in
    ``tests/test_train.py``), so every snapshot is reproducible from its epoch count.
    The clock is the CPU time of this process spent inside the training calls (model
    construction, ``fit``, checkpoints): evaluations of earlier snapshots do not count.

    Divergence guard: if an epoch's loss becomes NaN or infinite, the epoch is repeated from
    the last checkpoint with the learning rate halved from then on (``fit`` accepts a
    schedule that agrees with the checkpoint over the epochs already trained). The failed
    epoch's CPU time stays on the clock; each halving is recorded in ``stats["lr_halved_at"]``.
    If two halvings do not help (the model itself overflows, not the step), training stops
    at the last finite epoch, and every later budget gets that model
    (``stats["diverged_at_epoch"]``).

    ``on_epoch(epoch, model, stats)``, if given, is called after every epoch with the live
    model (copy it to keep it); its own time is not on the clock.

    ``valid`` (the literature's protocol): after every epoch the validation ELBO is computed
    off the clock, and each budget's snapshot is the epoch with the best validation ELBO
    so far (early stopping's choice of snapshot; ``stats["selected_epoch"]``,
    ``stats["valid_elbo"]``), not necessarily the last one.
    """
    budgets = sorted(budgets_cpu_s)
    schedule = lr if callable(lr) else (lambda t, lr=lr: lr)
    halved, diverged, best = [], None, None
    cpu = wall = 0.0
    c0, w0 = time.process_time(), time.perf_counter()
    torch.manual_seed(0)
    model = make_model()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    epoch, longest = 0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "run.pt"
        for budget in budgets:
            while diverged is None and epoch < max_epochs and _next_epoch_fits(epoch, cpu, longest, budget):
                c0, w0 = time.process_time(), time.perf_counter()
                epoch += 1
                try:
                    vt.fit(model, train, epochs=epoch, device=device, seed=0, progress=False, checkpoint=ckpt,
                           lr=schedule, **kw)
                except NonFiniteLossError as e:
                    if epoch == 1:
                        raise
                    epoch -= 1
                    state = vt.train.load_checkpoint(ckpt)
                    model.load_state_dict(state["model"])
                    if halved.count(epoch) >= 2:  # not the step size: stop at the last finite epoch
                        print(f"  epoch {epoch + 1:4d}: {e}; stopping at epoch {epoch}", flush=True)
                        diverged = epoch + 1
                        cpu += time.process_time() - c0
                        wall += time.perf_counter() - w0
                        break
                    print(f"  epoch {epoch + 1:4d}: {e}; repeating it with the learning rate halved", flush=True)
                    schedule = _halved_after(schedule, epoch)
                    halved.append(epoch)
                synchronize(device)
                dc = time.process_time() - c0
                cpu, wall, longest = cpu + dc, wall + time.perf_counter() - w0, max(longest, dc)
                print(f"  epoch {epoch:4d}: {cpu / 60:6.1f} CPU-min, {wall / 60:6.1f} wall-min", flush=True)
                if valid is not None:
                    score = validation_elbo(model, valid, device)
                    print(f"             validation ELBO {score:.2f}", flush=True)
                    if best is None or score > best[1]:
                        best = (epoch, score, copy.deepcopy(model.state_dict()))
                if on_epoch is not None:
                    on_epoch(epoch, model, _stats(epoch, cpu, wall, halved, diverged))
            snap = copy.deepcopy(model)
            snap.trained_epochs = epoch
            stats = _stats(epoch, cpu, wall, halved, diverged)
            if best is not None:
                snap.load_state_dict(best[2])
                stats.update(selected_epoch=best[0], valid_elbo=best[1])
            if on_snapshot is not None:
                on_snapshot(budget, snap, stats)
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="peer,mlp,hvae", help="comma-separated subset of " + ", ".join(ROWS))
    ap.add_argument("--k", type=int, default=None,
                    help="importance samples for the test NLL (default 1000; 5000 with --protocol literature)")
    ap.add_argument("--k-also", default="",
                    help="comma-separated further k: each row also gets test_nll_k<k> (e.g. 1000 beside 5000)")
    ap.add_argument("--protocol", choices=("book", "literature"), default="book",
                    help="book: train on all 60k images, snapshot = last epoch; literature: the Exemplar VAE "
                         "paper's protocol, a 50k/10k train/validation split (seeded), the snapshot with the "
                         "best validation ELBO within each budget, k = 5000 by default")
    ap.add_argument("--test-n", type=int, default=10000, help="number of test images")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2k train images, budgets of 0.05 and 0.1 minutes, "
                         "k=10 on 500 test images")
    ap.add_argument("--budget-minutes", default="10,60",
                    help="comma-separated training budgets in minutes on %d cores (default %%(default)s)" % CORES)
    ap.add_argument("--threads", type=int, default=CORES, help="torch.set_num_threads (default %(default)s)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quality.json"))
    ap.add_argument("--append", action="store_true", help="keep the rows already in --out (a later run adds rows)")
    ap.add_argument("--snapshots", default=None,
                    help="train only: save each budget's model to this folder (evaluate later with --evaluate)")
    ap.add_argument("--snapshot-epochs", default="",
                    help="with --snapshots: also save the model after these epochs (comma-separated), whatever "
                         "their CPU time; such a row has no budget and is named by its epochs")
    ap.add_argument("--merge", default=None,
                    help="comma-separated results files of this script (same machine) whose rows are added to --out")
    ap.add_argument("--refresh", action="store_true",
                    help="rewrite --out with this script's literature, targets and protocol text, keeping its "
                         "machine, settings and rows (less those named by --drop); trains nothing")
    ap.add_argument("--drop", default="", help="with --refresh: comma-separated row names to remove")
    ap.add_argument("--evaluate", default=None,
                    help="evaluate the models saved in this folder by --snapshots and add their rows to --out")
    args = ap.parse_args(argv)
    if args.refresh:
        import json

        old = json.loads(Path(args.out).read_text())
        drop = {n for n in args.drop.split(",") if n}
        old["rows"] = [r for r in old["rows"] if r["name"] not in drop]
        for r in old["rows"]:
            r.setdefault("threads", old["threads"])
        old.update(_described(old["train_n"], old["threads"], old.get("valid_n")))
        write_result(args.out, old)
        print("refreshed", args.out, "(dropped: %s)" % (", ".join(sorted(drop)) or "none"))
        return 0
    torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else vt.get_device()
    train = vt.load_dataset("fashion-mnist", "train", binarize="dynamic")
    test = vt.load_dataset("fashion-mnist", "test", binarize="dynamic")
    minutes = sorted(float(m) for m in args.budget_minutes.split(","))
    k = args.k if args.k is not None else (5000 if args.protocol == "literature" else 1000)
    k_also = [int(x) for x in args.k_also.split(",") if x]
    test_n = args.test_n
    valid = None
    if args.protocol == "literature":
        train, valid = split_train_valid(train)
    if args.quick:
        train, minutes, k, test_n = train.subset(2000), [0.05, 0.1], 10, 500
        k_also = [5] if k_also else []
        valid = None if valid is None else valid.subset(500)
    results = []
    if args.append and Path(args.out).exists():
        import json

        results = json.loads(Path(args.out).read_text())["rows"]

    def add_row(name, desc, model, stats, budget_minutes):
        synchronize(device)
        c0, w0 = time.process_time(), time.perf_counter()
        ev = vt.evaluate_model(model, test, k=k, device=device, seed=0, max_examples=test_n)
        row = {"name": name, "description": desc, "budget_minutes": budget_minutes,
               "budget_cpu_seconds": None if budget_minutes is None else 60 * CORES * budget_minutes,
               "epochs": stats["epochs"], "test_neg_elbo": -ev["elbo"], "test_nll": ev["nll"],
               "bits_per_dim": ev["bits_per_dim"], "active_units": ev["active_units"],
               "latent_dim": model.latent_dim, "parameters": sum(p.numel() for p in model.parameters()),
               "threads": stats.get("threads", torch.get_num_threads()),
               "train_cpu_seconds": round(stats["train_cpu_seconds"], 1),
               "lr_halved_at_epochs": stats.get("lr_halved_at", []),
               "diverged_at_epoch": stats.get("diverged_at_epoch"),
               "train_wall_seconds": round(stats["train_wall_seconds"], 1),
               "eval_cpu_seconds": round(time.process_time() - c0, 1),
               "eval_wall_seconds": round(time.perf_counter() - w0, 1)}
        if "selected_epoch" in stats:
            row.update(selected_epoch=stats["selected_epoch"], valid_elbo=stats["valid_elbo"])
        for kk in k_also:  # the same model with another k, e.g. k = 1000 beside the literature's 5000
            c0, w0 = time.process_time(), time.perf_counter()
            row[f"test_nll_k{kk}"] = vt.evaluate_model(model, test, k=kk, device=device, seed=0,
                                                      max_examples=test_n)["nll"]
            row[f"eval_k{kk}_cpu_seconds"] = round(time.process_time() - c0, 1)
            row[f"eval_k{kk}_wall_seconds"] = round(time.perf_counter() - w0, 1)
        results.append(row)
        print(f"{name:9s} budget {budget_minutes} min  {row['epochs']:4d} epochs  −ELBO {row['test_neg_elbo']:7.2f}  "
              f"NLL {row['test_nll']:7.2f} nats  AU {row['active_units']}/{row['latent_dim']}  "
              f"train {row['train_cpu_seconds'] / 60:5.1f} CPU-min ({row['train_wall_seconds'] / 60:5.1f} wall)  "
              f"eval {row['eval_wall_seconds'] / 60:4.1f} min", flush=True)
        _write(args.out, train, test, test_n, k, args, minutes, results, valid)  # a killed run keeps its rows

    if args.merge:
        import json

        for f in args.merge.split(","):
            other = json.loads(Path(f).read_text())
            assert other["machine"]["cpu"] == describe()["cpu"], f"{f} was measured on another machine"
            if other["k"] != k:  # the same models scored with another k: their NLL joins the matching rows
                _add_nll_at_k(results, other, f)
                continue
            seen = {(r["name"], r["budget_minutes"], r["epochs"]) for r in results}
            results += [r for r in other["rows"] if (r["name"], r["budget_minutes"], r["epochs"]) not in seen]
        _write(args.out, train, test, test_n, k, args, minutes, results, valid)
        return 0
    if args.evaluate:
        done = {(r["name"], r["budget_minutes"]) for r in results}
        for f in sorted(Path(args.evaluate).glob("*.pt"), key=lambda f: f.stat().st_mtime):
            snap = torch.load(f, weights_only=True)
            if snap["budget_minutes"] is not None and (snap["name"], snap["budget_minutes"]) in done:
                continue
            torch.manual_seed(0)
            model = ROWS[snap["name"]][1]()
            model.load_state_dict(snap["model"])
            add_row(snap["name"], ROWS[snap["name"]][0], model, snap["stats"], snap["budget_minutes"])
        return 0

    def save_snapshot(name, model, stats, budget_minutes):
        folder = Path(args.snapshots)
        folder.mkdir(parents=True, exist_ok=True)
        tag = f"e{stats['epochs']}" if budget_minutes is None else f"{budget_minutes:g}"
        tmp = folder / f"{name}-{tag}.pt.tmp"
        torch.save({"name": name, "budget_minutes": budget_minutes, "stats": stats,
                    "model": model.state_dict()}, tmp)
        tmp.replace(tmp.with_suffix(""))
        print(f"saved {name} at {tag}: {stats}", flush=True)

    for name in args.rows.split(","):
        desc, factory, kw = ROWS[name]
        budgets = {60 * CORES * m: m for m in minutes}
        on_epoch = None
        if args.snapshots:
            def on_snapshot(b, model, stats):
                save_snapshot(name, model, stats, budgets[b])

            keep = {int(e) for e in args.snapshot_epochs.split(",") if e}
            if keep:
                def on_epoch(epoch, model, stats):
                    if epoch in keep:
                        save_snapshot(name, model, stats, None)
        else:
            def on_snapshot(b, model, stats):
                add_row(name, desc, model, stats, budgets[b])
        if kw is None:  # the peer recipe: its own loop, on the same clock
            train_peer_for_budgets(train, device, list(budgets), on_snapshot=on_snapshot, on_epoch=on_epoch)
        else:
            train_for_budgets(factory, train, device, list(budgets), on_snapshot=on_snapshot, on_epoch=on_epoch,
                              valid=valid, **kw)
    for m in minutes:
        within = [r for r in results if r["budget_minutes"] is not None and r["budget_minutes"] <= m]
        if within and m in TARGETS:
            best = min(within, key=lambda r: r["test_nll"])
            print(f"best within {m:g} min: {best['name']} {best['test_nll']:.2f} nats "
                  f"(target ≤ {TARGETS[m]}: {'met' if best['test_nll'] <= TARGETS[m] else 'missed by %.2f' % (best['test_nll'] - TARGETS[m])})")
    print("wrote", args.out)
    return 0


def _add_nll_at_k(results, other, name):
    """Add ``test_nll_k<k>`` (and its evaluation times) of ``other``'s rows to the same models in ``results``."""
    kk = other["k"]
    for r in other["rows"]:
        same = [x for x in results
                if (x["name"], x["budget_minutes"], x["epochs"]) == (r["name"], r["budget_minutes"], r["epochs"])]
        assert len(same) == 1, f"{name}: no single row for {r['name']} {r['budget_minutes']} {r['epochs']}"
        same[0].update({f"test_nll_k{kk}": r["test_nll"], f"eval_k{kk}_cpu_seconds": r["eval_cpu_seconds"],
                        f"eval_k{kk}_wall_seconds": r["eval_wall_seconds"]})


VALID_N = 10_000
"""The literature's validation split: the last 10,000 of a seeded permutation of the 60,000 training images."""


def split_train_valid(train):
    """50,000 training and 10,000 validation images, as in the Exemplar VAE paper's configuration.

    The permutation is seeded (``torch.Generator().manual_seed(0)``), so every row and every
    re-run sees the same split.
    """
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    return train.subset(perm[:-VALID_N]), train.subset(perm[-VALID_N:])


def _described(train_n, threads, valid_n=None):
    """What a results file says about its protocol, the literature and the targets (shared with --refresh)."""
    split = (f"all {train_n:,} training images; no validation split, no early stopping" if not valid_n else
             f"{train_n:,} training + {valid_n:,} validation images (a seeded split of the 60,000); each budget's "
             "snapshot is the epoch with the best validation ELBO so far")
    return {"split": split,
            "clock": (f"training budget = CPU time of the training process (time.process_time(), all threads), "
                      f"{threads} PyTorch thread(s): M minutes on {CORES} cores = M x 60 x {CORES} CPU seconds; "
                      "evaluation not counted"),
            "targets": [{"budget_minutes": m, "target_nats": t, "literature_model": TARGET_MODELS[m][0],
                         "matching_rows": TARGET_MODELS[m][1]} for m, t in sorted(TARGETS.items())],
            "literature": LITERATURE}


def _write(path, train, test, test_n, k, args, minutes, results, valid=None):
    threads = torch.get_num_threads()
    out = {"machine": describe(), "data": "fashion-mnist, dynamically binarised",
           "train_n": len(train), "test_n": min(test_n, len(test)), "k": k, "seed": 0, "quick": args.quick,
           "budget_minutes": minutes, "cores": CORES, "threads": threads,
           "gpu_rows": "none: no GPU was available for these runs",
           "protocol": args.protocol, "valid_n": 0 if valid is None else len(valid),
           **_described(len(train), threads, 0 if valid is None else len(valid)), "rows": results}
    write_result(path, out)


if __name__ == "__main__":
    sys.exit(main())
