"""The crop-matcher recipe: the search model's second stage, trained on its own in minutes.

``seal train crop-check --config configs/train/crop_check_tiny.yaml`` runs :func:`run`:

1. render ``synth.n`` scenes of ``synth.split`` (never ``test``) and cut every object's jittered
   context crop plus background crops (:mod:`training.crop_check_data`), cached;
2. optimise per-word binary cross-entropy of :class:`search.vsm.crop_matcher.CropMatcher` over the
   vocabulary with :func:`training.loop.train` (``train`` section; half of each batch mirrored);
3. export to ``crop_check_train.export_dir`` (a VSM checkpoint's ``crop_check/`` folder is where the
   ``vsm`` localizer finds it) with ``config.yaml``, ``run.json``, the training log and
   ``metrics.json``: held-out ``val`` crops read per attribute kind, and the name check as the search
   asks it (the object's two-word names against the names with one word changed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from search.vsm.crop_matcher import CropMatcherConfig
from seal.errors import ConfigError
from training.crop_check_data import CropCheckDataConfig, build_crops, held_out
from training.config import TrainConfig
from training.recipe_common import finish_export, prepare_run

if TYPE_CHECKING:
    import torch

    from seal.config import Config


def synth_kinds() -> dict[str, list[str]]:
    """SynthVStar's attribute kind -> words (the default vocabulary, and the report's grouping)."""
    from eval.synth.scene import VALUES

    return {k: list(v) for k, v in VALUES.items()}


@dataclass
class CropCheckTrainConfig:
    """What the crop-matcher recipe builds (``crop_check_train`` section)."""

    matcher: CropMatcherConfig = field(default_factory=CropMatcherConfig)
    """Architecture and crop; an empty ``vocabulary`` takes SynthVStar's colour, pattern and shape words."""
    data: CropCheckDataConfig = field(default_factory=CropCheckDataConfig)
    hflip: bool = True
    """Mirror half of each batch left-right (no SynthVStar word changes under a mirror)."""
    export_dir: str = "checkpoints/vsm_tiny/crop_check"
    """Where the trained matcher goes: the ``crop_check/`` folder of the VSM checkpoint it serves."""
    train: TrainConfig | None = None
    """This recipe's optimisation; None = the root ``train`` section (``seal train crop-check``). Must
    be set when the VSM recipe trains the matcher as its last stage (``vsm_train.crop_check``), whose
    root ``train`` section is the VSM's."""

    def __post_init__(self) -> None:
        if not self.matcher.vocabulary:
            self.matcher.vocabulary = [w for words in synth_kinds().values() for w in words]
        if not self.export_dir:
            raise ConfigError("crop_check_train.export_dir: expected a directory, found an empty string")


def make_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, hflip: bool):
    """``epoch -> batches`` of ``{"images": (B, S, S, 3) uint8, "labels": (B, V) float32}``, shuffled by
    ``(seed, epoch)``; with ``hflip`` a random half of each batch mirrored."""
    import torch

    if len(images) < batch_size:
        raise ConfigError(f"train.batch_size: {batch_size} is more than the {len(images)} crops")

    def batches(epoch: int):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(images))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            idx = np.sort(order[start:start + batch_size])
            x = images[idx]
            if hflip:
                flip = rng.random(len(idx)) < 0.5
                x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
            yield {"images": torch.from_numpy(np.ascontiguousarray(x)),
                   "labels": torch.from_numpy(labels[idx].astype(np.float32))}

    return batches


def loss_fn(model, batch: dict) -> dict[str, "torch.Tensor"]:
    """Per-word BCE over the vocabulary (``total``) and ``word_acc``: words on the right side of 0.5."""
    import torch

    logits = model(model.normalize(batch["images"]))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["labels"])
    with torch.no_grad():
        acc = ((logits > 0).float() == batch["labels"]).float().mean()
    return {"total": loss, "word_acc": acc}


def evaluate(model, images: np.ndarray, labels: np.ndarray, kinds: dict[str, list[str]], batch: int = 256) -> dict:
    """Held-out figures: per kind, the accuracy of the most probable word on object crops; the name
    check on object crops (each two-word name of colour or pattern + shape: accepted at 0.5, and
    ranked above every name with one word changed); background crops accepted under any name."""
    import torch

    vocab = model.cfg.vocabulary
    with torch.no_grad():
        logp = np.concatenate([torch.nn.functional.logsigmoid(model(model.normalize(torch.from_numpy(images[s:s + batch]))))
                               .numpy() for s in range(0, len(images), batch)])
    rows = {k: [vocab.index(w) for w in words if w in vocab] for k, words in kinds.items()}
    objects = labels.sum(1) > 0
    out: dict = {"crops": int(objects.sum()), "background": int((~objects).sum()), "accuracy": {}}
    for kind, idx in rows.items():
        if idx:
            truth = labels[objects][:, idx].argmax(1)
            out["accuracy"][kind] = round(float((logp[objects][:, idx].argmax(1) == truth).mean()), 4)
    accepted = ranked = total = 0
    for first in ("color", "pattern"):
        if not rows.get(first) or not rows.get("shape"):
            continue
        for i in np.flatnonzero(objects):
            a = next(r for r in rows[first] if labels[i, r])
            b = next(r for r in rows["shape"] if labels[i, r])
            score = logp[i, a] + logp[i, b]
            swaps = [logp[i, r] + logp[i, b] for r in rows[first] if r != a] + \
                    [logp[i, a] + logp[i, r] for r in rows["shape"] if r != b]
            accepted += score > np.log(0.5)
            ranked += score > max(swaps)
            total += 1
    if total:
        out["name_accepted"], out["name_beats_near_misses"] = round(float(accepted) / total, 4), round(float(ranked) / total, 4)
    if (~objects).any() and rows.get("shape"):
        best_name = np.max([logp[~objects][:, a] + logp[~objects][:, b] for a in rows.get("color", []) for b in rows["shape"]],
                           axis=0)
        out["background_accepted"] = round(float((best_name > np.log(0.5)).mean()), 4)
    return out


def run(cfg: "Config", command: list[str] | None = None, log=print) -> dict:
    """Train the crop matcher as configured and export it; returns the loop's summary plus the report."""
    import torch

    from search.vsm.crop_matcher import CropMatcher
    from training.loop import train

    prepare_run(cfg, "crop matcher")
    ccfg = cfg.crop_check_train
    tcfg = ccfg.train or cfg.train
    m = ccfg.matcher
    torch.manual_seed(tcfg.seed)
    model = CropMatcher(m)
    log(f"crop matcher: {sum(p.numel() for p in model.parameters()) / 1e3:.0f} k parameters, input {m.input_size} px, "
        f"{len(m.vocabulary)} words")
    images, labels = build_crops(cfg.synth, ccfg.data, m, log)
    log(f"crop data: {len(images)} crops ({int((labels.sum(1) == 0).sum())} background)")
    val = held_out(cfg.synth, ccfg.data, m, log)
    report: dict = {}

    def on_save(trained, out_dir: Path) -> None:
        export_dir = Path(ccfg.export_dir)
        trained.eval().save_pretrained(export_dir)
        if val is not None:
            report.update(evaluate(trained, *val, synth_kinds()))
            log(f"held-out val crops: {report}")
            (export_dir / "metrics.json").write_text(json.dumps({"command": command, "val": report}, indent=2) + "\n")
        finish_export(export_dir, cfg, out_dir, command)  # config.yaml: the whole resolved config
        log(f"exported the crop matcher to {export_dir}")

    summary = train(model, make_batches(images, labels, tcfg.batch_size, tcfg.seed, ccfg.hflip), loss_fn, tcfg,
                    on_save=on_save)
    summary.update(crops=len(images), export_dir=ccfg.export_dir, val=report)
    return summary
