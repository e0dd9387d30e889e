"""PLACEHOLDER being replaced by the data helper: digits only."""
from __future__ import annotations
import torch
from torch.utils.data import Dataset


class ImageDataset(Dataset):
    def __init__(self, images, labels, name, split, binarize=None):
        self.images, self.labels, self.name, self.split, self.binarize = images, labels, name, split, binarize

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, i):
        x = self.images[i]
        if self.binarize == "dynamic":
            x = torch.bernoulli(x)
        return x, int(self.labels[i])


def load_dataset(name, split="train", root=None, download=True, binarize=None):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    n = 1500
    sl = slice(0, n) if split == "train" else slice(n, None)
    return ImageDataset(x[sl], y[sl], name, split, binarize)
