"""The peer recipe: pytorch/examples ``vae/main.py``, reproduced faithfully in PyTorch.

784-400-20 MLP with ReLU, sigmoid output, loss ``BCE(sum) + KL`` summed over the batch,
Adam(lr=1e-3), batch 128, a ``DataLoader`` with ``shuffle=True`` over a per-sample
``Dataset``, ``.to(device)`` per batch and ``loss.item()`` per step, as the example does.
The only change is the data: the benchmarks feed the same (dynamically binarised)
tensors to this loop and to ``vae_tutorial.fit``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

import vae_tutorial as vt


class PeerVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


class ImageTensors(Dataset):
    """Per-sample access to an image tensor, binarised on the fly when ``dynamic`` (like a torchvision transform)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, dynamic: bool):
        self.images, self.labels, self.dynamic = images, labels, dynamic

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i]
        return (torch.bernoulli(x) if self.dynamic else x), self.labels[i]


def train_epoch(model, loader, optimizer, device) -> float:
    """One epoch of pytorch/examples' ``train``; returns the mean loss per example."""
    model.train()
    train_loss = 0.0
    for data, _ in loader:
        data = data.to(device)
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = loss_function(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
    return train_loss / len(loader.dataset)


def make_loader(images, labels, dynamic: bool, batch_size: int = 128) -> DataLoader:
    return DataLoader(ImageTensors(images, labels, dynamic), batch_size=batch_size, shuffle=True)


def to_vae(peer: PeerVAE) -> vt.VAE:
    """The same network as a ``vae_tutorial.VAE`` (sigmoid + BCE = Bernoulli logits), for evaluation."""
    vae = vt.VAE(vt.MLPEncoder(784, [400], 20), vt.MLPDecoder(20, [400], (1, 28, 28)), "bernoulli")
    enc, dec = vae.encoder.net, vae.decoder.net
    with torch.no_grad():
        enc[0].weight.copy_(peer.fc1.weight); enc[0].bias.copy_(peer.fc1.bias)
        enc[2].weight.copy_(torch.cat([peer.fc21.weight, peer.fc22.weight]))
        enc[2].bias.copy_(torch.cat([peer.fc21.bias, peer.fc22.bias]))
        dec[0].weight.copy_(peer.fc3.weight); dec[0].bias.copy_(peer.fc3.bias)
        dec[2].weight.copy_(peer.fc4.weight); dec[2].bias.copy_(peer.fc4.bias)
    return vae.to(peer.fc1.weight.device)
