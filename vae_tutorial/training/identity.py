"""A model's identity: everything that decides what it computes, for checkpoints to compare.

A resumed run must be the same model as the one that wrote the checkpoint. The weights alone
do not say so: a rate floor, a diffusion schedule, a fixed observation variance or a label
scale change what a model computes without changing a single weight's shape, and
``load_state_dict`` would silently replace a schedule or a fixed variance held in a buffer by
the checkpoint's. So :func:`model_identity` describes a model completely, with one mechanism
for every model class, present and future:

* **structure**: every sub-module's class and its ``extra_repr`` (layer sizes, kernel sizes,
  activations), keyed by its dotted name;
* **settings**: every plain attribute of every sub-module (numbers, strings, booleans, None,
  and tuples or lists of them: ``likelihood``, ``rate_floor``, ``logsnr_min``, ``inference``,
  ``label_scale``, ...), except private ones and PyTorch's own ``training`` flag;
* **buffers**: a SHA-256 of the value of every buffer (a schedule, a fixed variance, a mask);
* **parameters**: the name and shape of every learned tensor, so that a value learned in one
  model and fixed in the other (``gaussian_logvar="learned"`` vs ``gaussian_logvar=0.0``) is
  named as such.

A model class that keeps a setting anywhere else (a closure, a private attribute) would
escape it: keep settings as public attributes or buffers. :func:`identity_differences` names
each difference between two identities in words.
"""
from __future__ import annotations

import hashlib
import numbers

import torch

_PLAIN = (str, bool, type(None))


def _plain(value):
    """``value`` as JSON-like data if it is a plain setting, else ``None``-marker ``...``."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, numbers.Integral):  # also NumPy integers
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (tuple, list)):
        items = [_plain(v) for v in value]
        return items if all(i is not ... for i in items) else ...
    return ...


def model_identity(model: torch.nn.Module) -> dict:
    """``{"structure": {name: str}, "settings": {name.attr: value}, "buffers": {name: sha256},
    "parameters": {name: shape}}``."""
    structure, settings, buffers = {}, {}, {}
    for name, module in model.named_modules():
        structure[name or "(model)"] = f"{type(module).__name__}({module.extra_repr()})"
        for attr, value in vars(module).items():
            if attr.startswith("_") or attr == "training":
                continue
            plain = _plain(value)
            if plain is not ...:
                settings[f"{name}.{attr}" if name else attr] = plain
    for name, buf in model.named_buffers():
        data = buf.detach().to("cpu").contiguous()
        digest = hashlib.sha256(f"{data.dtype}{tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
        buffers[name] = digest.hexdigest()[:16]
    parameters = {name: list(p.shape) for name, p in model.named_parameters()}
    return {"structure": structure, "settings": settings, "buffers": buffers, "parameters": parameters}


def identity_differences(old: dict, new: dict) -> list[str]:
    """Each way ``new`` differs from ``old``, e.g. ``"rate_floor: 0.0 (checkpoint) vs 5.0 (now)"``."""
    out = []
    # A tensor learned in one model and fixed in the other: one message, not two (an identity
    # stored before "parameters" existed cannot tell, and its buffers are compared as before).
    learned_old, learned_new = old.get("parameters"), new.get("parameters")
    swapped = set()
    if learned_old is not None and learned_new is not None:
        fixed = set(old.get("buffers", {})) | set(new.get("buffers", {}))
        for key in sorted((set(learned_old) ^ set(learned_new)) & fixed):
            then, now = ("learned", "fixed") if key in learned_old else ("fixed", "learned")
            out.append(f"{key} is {then} in the checkpoint but {now} now (a learned parameter vs a fixed "
                       "buffer, e.g. gaussian_logvar='learned' vs a number)")
            swapped.add(key)
    for part, what in (("structure", "layer"), ("settings", "setting"), ("buffers", "buffer"),
                       ("parameters", "learned tensor")):
        if part == "parameters" and (learned_old is None or learned_new is None):
            continue
        a, b = old.get(part, {}), new.get(part, {})
        for key in sorted(set(a) | set(b)):
            if key in swapped and part in ("buffers", "parameters"):
                continue
            if a.get(key, "absent") != b.get(key, "absent"):
                if part == "buffers" and key in a and key in b:
                    out.append(f"buffer {key} (a schedule, fixed variance or mask) has other values")
                elif part == "buffers":
                    out.append(f"buffer {key} (a schedule, fixed variance or mask): "
                               f"{'present' if key in a else 'absent'} (checkpoint) vs "
                               f"{'present' if key in b else 'absent'} (now)")
                else:
                    out.append(f"{what} {key}: {a.get(key, 'absent')} (checkpoint) vs {b.get(key, 'absent')} (now)")
    return out
