"""Model quality in nats: the peer recipe against the book's models, on the same data.

Data: dynamically binarised Fashion-MNIST (60k train, 10k test). Every model is scored by
``vae_tutorial.evaluate_model``: test −ELBO, test NLL from the IWAE bound with ``k``
samples (nats and bits/dim), active units; plus parameters and training wall time.

Rows: the pytorch/examples recipe (784-400-20, ReLU, Adam 1e-3, batch 128, 10 epochs, its
own DataLoader loop), the book's MLP VAE, its conv VAE, and an MLP trained on the IWAE
bound (k=5). Target: the book's best model ≤ 228 nats with ≤ 10 minutes of training on a
2-core CPU.

Each book model trains whole epochs for as long as the next one still fits in the budget
(``--budget-minutes``, default 10), so the rows answer "what does 10 minutes of training buy
on this machine"; the number of epochs is recorded. The peer recipe trains its 10 epochs.

Usage: ``python benchmarks/quality.py [--rows peer,mlp,iwae,conv] [--k 1000] [--test-n 10000]``
(``--quick`` for a smoke run on small subsets).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer  # noqa: E402
from machine import describe, write_result  # noqa: E402

import vae_tutorial as vt  # noqa: E402
from vae_tutorial.timing import synchronize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET_NATS = 228.0
TARGET_TRAIN_MINUTES = 10.0


def train_peer(train, device, epochs):
    torch.manual_seed(0)
    model = peer.PeerVAE().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = peer.make_loader(train.images, train.labels, dynamic=True)
    for _ in range(epochs):
        peer.train_epoch(model, loader, opt, device)
    vae = peer.to_vae(model)
    vae.trained_epochs = epochs
    return vae


def book_mlp():
    return vt.VAE(vt.MLPEncoder(784, [512, 256], 32), vt.MLPDecoder(32, [256, 512], (1, 28, 28)))


def book_conv():
    return vt.VAE(vt.ConvEncoder(32), vt.ConvDecoder(32))


# name -> (description, how to train it). A trainer gets (train set, device, budget): the
# peer recipe reads the budget as its fixed epoch count, the book's rows as seconds.
ROWS = {
    "peer": ("pytorch/examples recipe: 784-400-20, Adam 1e-3, batch 128, 10 epochs",
             lambda tr, dev, budget: train_peer(tr, dev, budget["peer_epochs"])),
    "mlp": ("book MLP VAE: 784-512-256-32, Adam 1e-3, batch 128",
            lambda tr, dev, budget: _fit_for(book_mlp(), tr, dev, budget["seconds"])),
    "iwae": ("book MLP trained on the IWAE bound (k=5): 784-512-256-32, Adam 1e-3, batch 128",
             lambda tr, dev, budget: _fit_for(book_mlp(), tr, dev, budget["seconds"], objective="iwae", iwae_k=5)),
    "conv": ("book conv VAE: 2 conv + 256 hidden, Z=32, Adam 1e-3, batch 128",
             lambda tr, dev, budget: _fit_for(book_conv(), tr, dev, budget["seconds"])),
}


def _fit_for(model, train, device, budget_s, max_epochs=200, **kw):
    """Train whole epochs while the next one still fits in ``budget_s`` seconds.

    ``fit`` is called once per epoch and resumes from its own checkpoint, which gives the
    same parameters as one uninterrupted ``fit`` call of that many epochs (tested in
    ``tests/test_train.py``), so a row is reproducible from its recorded epoch count.
    """
    torch.manual_seed(0)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "run.pt"
        epoch, longest = 0, 0.0
        # 5 % margin: an epoch may run a little longer than the longest one so far
        while epoch < max_epochs and (epoch == 0 or time.perf_counter() - start + 1.05 * longest <= budget_s):
            t0 = time.perf_counter()
            epoch += 1
            vt.fit(model, train, epochs=epoch, device=device, seed=0, progress=False, checkpoint=ckpt, **kw)
            longest = max(longest, time.perf_counter() - t0)
    model.trained_epochs = epoch
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of " + ", ".join(ROWS))
    ap.add_argument("--k", type=int, default=1000, help="importance samples for the test NLL")
    ap.add_argument("--test-n", type=int, default=10000, help="number of test images")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2k train images, 1 peer epoch, a 10-second budget, k=10 on 500 test images")
    ap.add_argument("--budget-minutes", type=float, default=TARGET_TRAIN_MINUTES,
                    help="training time per book model: whole epochs while the next one fits (default %(default)s)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quality.json"))
    args = ap.parse_args(argv)
    device = torch.device(args.device) if args.device else vt.get_device()
    train = vt.load_dataset("fashion-mnist", "train", binarize="dynamic")
    test = vt.load_dataset("fashion-mnist", "test", binarize="dynamic")
    budget, k, test_n = {"seconds": 60 * args.budget_minutes, "peer_epochs": 10}, args.k, args.test_n
    if args.quick:
        train, budget, k, test_n = train.subset(2000), {"seconds": 10.0, "peer_epochs": 1}, 10, 500
    results = []
    for name in args.rows.split(","):
        desc, trainer = ROWS[name]
        t0 = time.perf_counter()
        model = trainer(train, device, budget)
        synchronize(device)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ev = vt.evaluate_model(model, test, k=k, device=device, seed=0, max_examples=test_n)
        eval_s = time.perf_counter() - t0
        row = {"name": name, "description": desc, "epochs": model.trained_epochs,
               "test_neg_elbo": -ev["elbo"], "test_nll": ev["nll"],
               "bits_per_dim": ev["bits_per_dim"], "active_units": ev["active_units"],
               "latent_dim": model.latent_dim, "parameters": sum(p.numel() for p in model.parameters()),
               "train_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1)}
        results.append(row)
        print(f"{name:5s} {row['epochs']:3d} epochs  −ELBO {row['test_neg_elbo']:7.2f}  NLL {row['test_nll']:7.2f} nats "
              f"({row['bits_per_dim']:.4f} bits/dim)  AU {row['active_units']:2d}/{row['latent_dim']}  "
              f"params {row['parameters']:,}  train {train_s / 60:5.1f} min  eval {eval_s / 60:4.1f} min", flush=True)
        _write(args.out, train, test, test_n, k, args, results)  # after every row: a long run killed late keeps its rows
    book = [r for r in results if r["name"] != "peer"]
    if book:
        best = min(book, key=lambda r: r["test_nll"])
        print(f"best book model: {best['name']} {best['test_nll']:.2f} nats (target ≤ {TARGET_NATS}), "
              f"trained in {best['train_seconds'] / 60:.1f} min (target ≤ {TARGET_TRAIN_MINUTES})")
    print("wrote", args.out)
    return 0


def _write(path, train, test, test_n, k, args, results):
    out = {"machine": describe(), "data": "fashion-mnist, dynamically binarised",
           "train_n": len(train), "test_n": min(test_n, len(test)), "k": k, "quick": args.quick,
           "budget_minutes": args.budget_minutes, "target_nats": TARGET_NATS,
           "target_train_minutes": TARGET_TRAIN_MINUTES, "rows": results}
    write_result(path, out)


if __name__ == "__main__":
    sys.exit(main())
