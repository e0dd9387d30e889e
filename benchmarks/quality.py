"""Model quality in nats: the peer recipe against the book's models, on the same data.

Data: dynamically binarised Fashion-MNIST (60k train, 10k test). Every model is scored by
``vae_tutorial.evaluate_model``: test −ELBO, test NLL from the IWAE bound with ``k``
samples (nats and bits/dim), active units; plus parameters and training wall time.

Rows: the pytorch/examples recipe (784-400-20, ReLU, Adam 1e-3, batch 128, 10 epochs, its
own DataLoader loop), the book's MLP VAE, its conv VAE, and an MLP trained on the IWAE
bound (k=5). Target: the book's best model ≤ 228 nats with ≤ 10 minutes of training on a
2-core CPU.

Usage: ``python benchmarks/quality.py [--rows peer,mlp,conv,iwae] [--k 1000] [--test-n 10000]``
(``--quick`` for a smoke run on small subsets).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer  # noqa: E402
from machine import describe  # noqa: E402

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
    return peer.to_vae(model)


def book_mlp():
    return vt.VAE(vt.MLPEncoder(784, [512, 256], 32), vt.MLPDecoder(32, [256, 512], (1, 28, 28)))


def book_conv():
    return vt.VAE(vt.ConvEncoder(32), vt.ConvDecoder(32))


# name -> (description, how to train it); each trainer gets (train set, device, epochs scale)
ROWS = {
    "peer": ("pytorch/examples recipe: 784-400-20, Adam 1e-3, batch 128, 10 epochs",
             lambda tr, dev, s: train_peer(tr, dev, max(1, round(10 * s)))),
    "mlp": ("book MLP VAE: 784-512-256-32, Adam 1e-3, batch 128, 60 epochs",
            lambda tr, dev, s: _fit(book_mlp(), tr, dev, 60 * s)),
    "conv": ("book conv VAE: 2 conv + 256 hidden, Z=32, Adam 1e-3, batch 128, 12 epochs",
             lambda tr, dev, s: _fit(book_conv(), tr, dev, 12 * s)),
    "iwae": ("book MLP trained on the IWAE bound (k=5), 784-512-256-32, 25 epochs",
             lambda tr, dev, s: _fit(book_mlp(), tr, dev, 25 * s, objective="iwae", iwae_k=5)),
}


def _fit(model, train, device, epochs, **kw):
    torch.manual_seed(0)
    vt.fit(model, train, epochs=max(1, round(epochs)), device=device, seed=0, progress=False, **kw)
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of " + ", ".join(ROWS))
    ap.add_argument("--k", type=int, default=1000, help="importance samples for the test NLL")
    ap.add_argument("--test-n", type=int, default=10000, help="number of test images")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2k train images, short training, k=10")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quality.json"))
    args = ap.parse_args(argv)
    device = torch.device(args.device) if args.device else vt.get_device()
    train = vt.load_dataset("fashion-mnist", "train", binarize="dynamic")
    test = vt.load_dataset("fashion-mnist", "test", binarize="dynamic")
    scale, k, test_n = 1.0, args.k, args.test_n
    if args.quick:
        train, scale, k, test_n = train.subset(2000), 0.1, 10, 500
    results = []
    for name in args.rows.split(","):
        desc, trainer = ROWS[name]
        t0 = time.perf_counter()
        model = trainer(train, device, scale)
        synchronize(device)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ev = vt.evaluate_model(model, test, k=k, device=device, seed=0, max_examples=test_n)
        eval_s = time.perf_counter() - t0
        row = {"name": name, "description": desc, "test_neg_elbo": -ev["elbo"], "test_nll": ev["nll"],
               "bits_per_dim": ev["bits_per_dim"], "active_units": ev["active_units"],
               "latent_dim": model.latent_dim, "parameters": sum(p.numel() for p in model.parameters()),
               "train_seconds": round(train_s, 1), "eval_seconds": round(eval_s, 1)}
        results.append(row)
        print(f"{name:5s} −ELBO {row['test_neg_elbo']:7.2f}  NLL {row['test_nll']:7.2f} nats "
              f"({row['bits_per_dim']:.4f} bits/dim)  AU {row['active_units']:2d}/{row['latent_dim']}  "
              f"params {row['parameters']:,}  train {train_s / 60:5.1f} min  eval {eval_s / 60:4.1f} min", flush=True)
    book = [r for r in results if r["name"] != "peer"]
    if book:
        best = min(book, key=lambda r: r["test_nll"])
        print(f"best book model: {best['name']} {best['test_nll']:.2f} nats (target ≤ {TARGET_NATS}), "
              f"trained in {best['train_seconds'] / 60:.1f} min (target ≤ {TARGET_TRAIN_MINUTES})")
    out = {"machine": describe(), "data": "fashion-mnist, dynamically binarised",
           "train_n": len(train), "test_n": min(test_n, len(test)), "k": k, "quick": args.quick,
           "target_nats": TARGET_NATS, "target_train_minutes": TARGET_TRAIN_MINUTES, "rows": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
