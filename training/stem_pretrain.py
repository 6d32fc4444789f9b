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
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from seal.core.errors import ConfigError
from training.config import TrainConfig

if TYPE_CHECKING:
    import torch


@dataclass
class StemPretrainConfig:
    """Stand-alone training of the detector stem + attribute head before the main VSM loop
    (``vsm_train.stem_pretrain``; null = no such stage)."""

    train: TrainConfig = field(default_factory=TrainConfig)
    """The stem's own loop (``batch_size`` = patches per step, drawn with replacement; the shipped
    recipe's: ``one_cycle``, AdamW betas (0.9, 0.999), no clipping)."""
    hflip: bool = True
    """Mirror half of each batch left-right (patches and maps; no SynthVStar name changes under a mirror)."""
    holdout: int = 256
    """Patches held out of training to report per-attribute accuracy on (the last ones of the data)."""
    output_scale: float = 0.0
    """After pretraining, scale the stem's output projection so its features' RMS is this multiple of
    the tower's on the held-out patches (0 = leave it)."""

    def __post_init__(self) -> None:
        if self.holdout < 0 or self.output_scale < 0:
            raise ConfigError(f"vsm_train.stem_pretrain: expected holdout >= 0 and output_scale >= 0, found "
                              f"{self.holdout} / {self.output_scale}")


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


def pretrain_stem(model, patches: np.ndarray, attributes: np.ndarray, cfg: StemPretrainConfig, seed: int,
                  log=print) -> dict:
    """Train ``model.detector_stem`` and ``model.attribute_head`` in place on ``(patches, attributes)``
    with :func:`training.loop.train` (``cfg.train``; batches of patches drawn with replacement from a
    stream seeded by ``seed``).

    The torch random stream is not re-seeded: a zero stem projection is re-initialised from it as the
    model's construction left it (as the shipped model was). The result is saved to
    ``cfg.train.out_dir/stem_pretrain.safetensors`` with ``stem_pretrain.json``; a later call with the
    same settings and data size loads it instead of training again (an interrupted run restarts its
    main loop without repeating this stage; one interrupted in this stage resumes it).

    Returns: ``{"steps", "seconds", "accuracy": {attribute: held-out object-cell accuracy}, "loaded"}``.
    """
    import torch
    from safetensors.torch import save_file

    from seal.core.weights import load_safetensors
    from training.loop import train

    if model.detector_stem is None or model.attribute_head is None:
        raise ConfigError("vsm_train.stem_pretrain needs vsm.detector_stem and the attribute head "
                          "(vsm_train.data.attribute_maps: true)")
    if len(patches) <= cfg.holdout:
        raise ConfigError(f"vsm_train.stem_pretrain.holdout: {cfg.holdout} patches held out of only {len(patches)}")
    out_dir = Path(cfg.train.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights, record = out_dir / "stem_pretrain.safetensors", out_dir / "stem_pretrain.json"
    key = json.loads(json.dumps({"config": asdict(cfg), "seed": seed, "patches": int(len(patches)),
                                 "grid": list(attributes.shape[1:])}))  # as recorded (tuples become lists)
    modules = torch.nn.ModuleDict({"detector_stem": model.detector_stem, "attribute_head": model.attribute_head})
    train_n = len(patches) - cfg.holdout
    held = np.arange(train_n, len(patches))
    recorded = json.loads(record.read_text()) if record.is_file() else {}
    if recorded.get("key") == key and "summary" in recorded and weights.is_file():
        tensors = load_safetensors(weights, what="stem pretraining stage")  # damaged or NaN: InputError
        for name, module in modules.items():
            module.load_state_dict({k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(name + ".")})
        log(f"stem pretraining: loaded {weights} (held-out accuracy {recorded['summary']['accuracy']})")
        return {**recorded["summary"], "loaded": True}
    if recorded.get("key") != key:  # the loop's state there (if any) is another stage's: start over
        shutil.rmtree(out_dir / "checkpoint", ignore_errors=True)
        (out_dir / "train_log.jsonl").unlink(missing_ok=True)
        record.write_text(json.dumps({"key": key}, indent=2) + "\n")

    flags = [p.requires_grad for p in modules.parameters()]
    for p in modules.parameters():
        p.requires_grad_(True)
    with torch.no_grad():
        if not any(bool(p.abs().max() > 0) for p in model.detector_stem.proj.parameters()):
            torch.nn.init.normal_(model.detector_stem.proj.weight, std=0.02)  # a zero projection passes no gradient
    classes = tuple(model.cfg.attribute_classes)

    def collate(key: tuple[np.ndarray, np.ndarray | None]) -> dict:
        idx, flip = key
        return {"pixels": _pixels(model, patches, idx, flip), "labels": _labels(attributes, idx, flip)}

    def loss_fn(stem, batch: dict) -> dict:
        from search.vsm.losses import attribute_cross_entropy

        logits = stem["attribute_head"](stem["detector_stem"](batch["pixels"])).split(classes, 1)
        return {"total": attribute_cross_entropy(logits, batch["labels"], balanced=True)}

    log(f"stem pretraining: {cfg.train.max_steps} steps of {cfg.train.batch_size} of {train_n} patches")
    result = train(modules, _sampled(train_n, cfg.train.batch_size, cfg.hflip, seed), loss_fn, cfg.train, collate)
    modules.eval()
    accuracy = attribute_accuracy(model, patches, attributes, held)
    if cfg.output_scale > 0:
        _match_scale(model, patches, held[:64], cfg.output_scale)
    for p, flag in zip(modules.parameters(), flags):
        p.requires_grad_(flag)
    summary = {"steps": result["steps"], "seconds": result["seconds"], "accuracy": accuracy}
    save_file({f"{name}.{k}": v.detach().contiguous()
               for name, m in modules.items() for k, v in m.state_dict().items()}, str(weights))
    record.write_text(json.dumps({"key": key, "summary": summary}, indent=2) + "\n")
    log(f"stem pretraining: {result['steps']} steps in {result['seconds']} s, held-out object-cell accuracy {accuracy}")
    return {**summary, "loaded": False}


def _sampled(n: int, batch_size: int, hflip: bool, seed: int):
    """``epochs`` for the loop: one endless epoch of ``(patch indices (B,), flips (B,) bool or None)``,
    drawn with replacement from ``range(n)`` by a stream seeded with ``seed``."""

    def epochs(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        rng = np.random.default_rng(seed)
        while True:
            idx = rng.integers(0, n, batch_size)
            yield idx, (rng.random(batch_size) < 0.5 if hflip else None)

    return epochs


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
