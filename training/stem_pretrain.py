"""Detector-stem pretraining: the VSM's convolutional stem learns what objects look like, alone.

The reference VSM reads its boxes from a *pretrained* detector (OWL-ViT). Ours has no pretrained
weights to start from, and inside the full model the stem learns slowly: a step also runs the
tower, the LM and both decoders, and the one query of a row says little about the other objects
of the patch. So before the main loop, the recipe can train the stem (``vsm.detector_stem``) and
the per-cell attribute head (``vsm.attribute_classes``) on their own, on the patches and attribute
maps the main loop uses (``vsm_train.data.attribute_maps``): a plain CNN classification of every
vision-grid cell into colour / pattern / shape (or background), with many patches per step.

The stem's output projection is then re-scaled (``output_scale``) so that its features neither
swamp nor vanish under the tower's at the start of the main loop.

Shapes: patches (P, S, S, 3) uint8; attribute maps (P, A, g, g) int16 (see
:func:`training.vsm_data.attribute_maps`); the stem maps (B, 3, S, S) -> (B, C_v, g, g).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seal.errors import ConfigError

if TYPE_CHECKING:
    import torch


@dataclass
class StemPretrainConfig:
    """Stand-alone training of the detector stem + attribute head before the main VSM loop."""

    steps: int = 0
    """Optimizer steps (0 = off: the stem starts from its random init inside the main loop)."""
    batch_size: int = 32
    """Patches per step."""
    lr: float = 0.002
    """Peak learning rate (one-cycle: linear warm-up over ``warmup_fraction``, cosine decay)."""
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    hflip: bool = True
    """Mirror half of each batch left-right (patches and maps; no SynthVStar name changes under a mirror)."""
    holdout: int = 256
    """Patches held out of training to report per-attribute accuracy on (the last ones of the data)."""
    log_every: int = 100
    output_scale: float = 0.0
    """After pretraining, scale the stem's output projection so its features' RMS is this multiple of
    the tower's on the held-out patches (0 = leave it)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.holdout < 0 or self.log_every < 1:
            raise ConfigError("vsm_train.stem_pretrain: expected steps >= 0, batch_size >= 1, holdout >= 0, "
                              f"log_every >= 1, found {self.steps} / {self.batch_size} / {self.holdout} / "
                              f"{self.log_every}")
        if self.lr <= 0 or not 0.0 <= self.warmup_fraction < 1.0 or self.output_scale < 0:
            raise ConfigError("vsm_train.stem_pretrain: expected lr > 0, warmup_fraction in [0, 1), "
                              f"output_scale >= 0, found {self.lr} / {self.warmup_fraction} / {self.output_scale}")


def _mirror(t: "torch.Tensor", flip: np.ndarray | None) -> "torch.Tensor":
    """(B, ..., W) ``t`` with the rows where ``flip`` mirrored along the last axis."""
    import torch

    if flip is None:
        return t
    return torch.where(torch.from_numpy(flip).view(-1, *[1] * (t.ndim - 1)), t.flip(-1), t)


def _pixels(model, patches: np.ndarray, idx: np.ndarray, flip: np.ndarray | None = None) -> "torch.Tensor":
    """(B, 3, S, S) normalised pixel values of ``patches[idx]``, mirrored where ``flip``."""
    return _mirror(model.preprocess([patches[i] for i in idx]), flip)


def _labels(attributes: np.ndarray, idx: np.ndarray, flip: np.ndarray | None = None) -> "torch.Tensor":
    """(B, A, g, g) int64 attribute maps of ``idx``, mirrored where ``flip``."""
    import torch

    return _mirror(torch.from_numpy(attributes[idx].astype(np.int64)), flip)


def attribute_accuracy(model, patches: np.ndarray, attributes: np.ndarray, idx: np.ndarray,
                       batch: int = 64) -> dict[str, float]:
    """Fraction of object cells (label > 0) whose argmax class is right, per attribute channel,
    from the stem alone (the tower's features are not added)."""
    import torch

    from search.vsm.losses import attribute_cell_hits
    from training.vsm_data import ATTRIBUTE_ORDER

    classes = tuple(model.cfg.attribute_classes)
    hit, total = np.zeros(len(classes)), np.zeros(len(classes))
    with torch.no_grad():
        for s in range(0, len(idx), batch):
            part = idx[s:s + batch]
            logits = model.attribute_head(model.detector_stem(_pixels(model, patches, part))).split(classes, 1)
            h, n = attribute_cell_hits(logits, _labels(attributes, part))
            hit += h
            total += n
    return {ATTRIBUTE_ORDER[c]: float(hit[c] / total[c]) if total[c] else float("nan") for c in range(len(classes))}


def pretrain_stem(model, patches: np.ndarray, attributes: np.ndarray, cfg: StemPretrainConfig,
                  out_dir: Path, log=print) -> dict:
    """Train ``model.detector_stem`` and ``model.attribute_head`` in place on ``(patches, attributes)``.

    The result is saved to ``out_dir/stem_pretrain.safetensors`` with ``stem_pretrain.json``; a later
    call with the same settings and data size loads it instead of training again (an interrupted
    run restarts its main loop without repeating this stage).

    Returns: ``{"steps", "seconds", "accuracy": {attribute: held-out object-cell accuracy}, "loaded"}``.
    """
    import torch
    from safetensors.torch import load_file, save_file

    from search.vsm.losses import attribute_cross_entropy

    if model.detector_stem is None or model.attribute_head is None:
        raise ConfigError("vsm_train.stem_pretrain.steps > 0 needs vsm.detector_stem and the attribute head "
                          "(vsm_train.data.attribute_maps: true)")
    if len(patches) <= cfg.holdout:
        raise ConfigError(f"vsm_train.stem_pretrain.holdout: {cfg.holdout} patches held out of only {len(patches)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    weights, record = out_dir / "stem_pretrain.safetensors", out_dir / "stem_pretrain.json"
    key = {"config": asdict(cfg), "patches": int(len(patches)), "grid": list(attributes.shape[1:])}
    modules = {"detector_stem": model.detector_stem, "attribute_head": model.attribute_head}
    train_n = len(patches) - cfg.holdout
    held = np.arange(train_n, len(patches))
    if weights.is_file() and record.is_file() and json.loads(record.read_text()).get("key") == key:
        tensors = load_file(str(weights))
        for name, module in modules.items():
            module.load_state_dict({k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(name + ".")})
        summary = json.loads(record.read_text())["summary"]
        log(f"stem pretraining: loaded {weights} (held-out accuracy {summary['accuracy']})")
        return {**summary, "loaded": True}

    classes = tuple(model.cfg.attribute_classes)
    params = [p for m in modules.values() for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    with torch.no_grad():
        if not any(bool(p.abs().max() > 0) for p in model.detector_stem.proj.parameters()):
            torch.nn.init.normal_(model.detector_stem.proj.weight, std=0.02)  # a zero projection passes no gradient
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=max(cfg.steps, 1),
                                                    pct_start=max(cfg.warmup_fraction, 1e-3))
    rng = np.random.default_rng(cfg.seed)
    for m in modules.values():
        m.train()
    started = time.time()
    for step in range(1, cfg.steps + 1):
        idx = rng.integers(0, train_n, cfg.batch_size)
        flip = rng.random(cfg.batch_size) < 0.5 if cfg.hflip else None
        logits = model.attribute_head(model.detector_stem(_pixels(model, patches, idx, flip))).split(classes, 1)
        loss = attribute_cross_entropy(logits, _labels(attributes, idx, flip), balanced=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % cfg.log_every == 0 or step == cfg.steps:
            rate = (time.time() - started) / step
            log(f"stem pretraining: step {step}/{cfg.steps} loss {float(loss.detach()):.4f} "
                f"({rate:.2f} s/step, ETA {rate * (cfg.steps - step) / 60:.1f} min)")
    for m in modules.values():
        m.eval()
    accuracy = attribute_accuracy(model, patches, attributes, held)
    if cfg.output_scale > 0:
        _match_scale(model, patches, held[:64], cfg.output_scale)
    for p, flag in zip(params, flags):
        p.requires_grad_(flag)
    summary = {"steps": cfg.steps, "seconds": round(time.time() - started, 1), "accuracy": accuracy}
    save_file({f"{name}.{k}": v.detach().contiguous() for name, m in modules.items() for k, v in m.state_dict().items()},
              str(weights))
    record.write_text(json.dumps({"key": key, "summary": summary}, indent=2) + "\n")
    log(f"stem pretraining: {cfg.steps} steps in {summary['seconds']} s, held-out object-cell accuracy {accuracy}")
    return {**summary, "loaded": False}


def _match_scale(model, patches: np.ndarray, idx: np.ndarray, ratio: float) -> None:
    """Scale the stem's output projection (and undo it in the attribute head) so that the stem's
    features' RMS is ``ratio`` times the vision tower's on ``patches[idx]``."""
    import torch

    with torch.no_grad():
        x = _pixels(model, patches, idx)
        stem = model.detector_stem(x)
        tower = model.encode_images(x).vision - stem  # (B, C_v, g, g): the tower's share of the features
        factor = ratio * float(tower.pow(2).mean().sqrt()) / max(float(stem.pow(2).mean().sqrt()), 1e-8)
        model.detector_stem.proj.weight.mul_(factor)
        model.detector_stem.proj.bias.mul_(factor)
        model.attribute_head.weight.div_(factor)
