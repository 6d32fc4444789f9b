"""The crop-matcher recipe: the search model's second stage, trained on its own in minutes.

``seal train crop-matcher --recipe tiny`` (or, as its last stage, ``seal train vsm``) runs
:func:`train_matcher`:

1. render ``synth.n`` scenes of ``synth.split`` (never ``test``) and cut every object's jittered
   context crop plus background crops (:mod:`training.crop_matcher_data`), cached;
2. optimise per-word binary cross-entropy of :class:`search.vsm.crop_matcher.CropMatcher` over the
   vocabulary with :func:`training.loop.train` (``crop_matcher_train.train``; half of each batch
   mirrored);
3. export the matcher with its manifest (kind ``crop_matcher``, config = ``crop_matcher.json``), the
   training log and ``metrics.json``: held-out ``val`` crops read per attribute kind, and the name
   check as the search asks it (the object's two-word names against the names with one word changed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seal.core.errors import ConfigError
from training.crop_matcher_config import CropMatcherTrainConfig, TrainCropMatcherConfig, synth_kinds
from training.crop_matcher_data import build_crops, held_out
from training.recipe_common import copy_train_log, prepare_run, recipe_record

if TYPE_CHECKING:
    import torch

    from eval.synth.config import SynthConfig


def make_epochs(n: int, batch_size: int, seed: int, hflip: bool):
    """``epoch -> batch keys (crop indices (B,), flips (B,) bool or None)``: the ``n`` crops shuffled by
    ``(seed, epoch)``; with ``hflip`` a random half of each batch to be mirrored."""
    if n < batch_size:
        raise ConfigError(f"crop_matcher_train.train.batch_size: {batch_size} is more than the {n} crops")

    def epochs(epoch: int):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(n)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            idx = np.sort(order[start:start + batch_size])
            yield idx, (rng.random(len(idx)) < 0.5 if hflip else None)

    return epochs


def make_collate(images: np.ndarray, labels: np.ndarray):
    """``(crop indices, flips) -> {"images": (B, S, S, 3) uint8, "labels": (B, V) float32}``."""
    import torch

    def collate(key: tuple[np.ndarray, np.ndarray | None]) -> dict:
        idx, flip = key
        x = images[idx]
        if flip is not None:
            x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
        return {"images": torch.from_numpy(np.ascontiguousarray(x)),
                "labels": torch.from_numpy(labels[idx].astype(np.float32))}

    return collate


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
        logp = np.concatenate([torch.nn.functional.logsigmoid(
                                   model(model.normalize(torch.from_numpy(images[s:s + batch]))))
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
        out["name_accepted"] = round(float(accepted) / total, 4)
        out["name_beats_near_misses"] = round(float(ranked) / total, 4)
    if (~objects).any() and rows.get("shape"):
        best_name = np.max([logp[~objects][:, a] + logp[~objects][:, b]
                            for a in rows.get("color", []) for b in rows["shape"]],
                           axis=0)
        out["background_accepted"] = round(float((best_name > np.log(0.5)).mean()), 4)
    return out


def run(cfg: TrainCropMatcherConfig, command: list[str] | None = None, log=print) -> dict:
    """``seal train crop-matcher``: train the matcher as configured into ``crop_matcher_train.export_dir``."""
    if not cfg.crop_matcher_train.export_dir:
        raise ConfigError("crop_matcher_train.export_dir: expected the directory the matcher is written to, "
                          "found an empty string")
    return train_matcher(cfg.synth, cfg.crop_matcher_train, cfg.seed, cfg.crop_matcher_train.export_dir, command, log)


def train_matcher(synth: "SynthConfig", ccfg: CropMatcherTrainConfig, seed: int, export_dir: str | Path,
                  command: list[str] | None = None, log=print) -> dict:
    """Train the crop matcher of ``ccfg`` on crops of ``synth``'s scenes and export it to ``export_dir``;
    returns the loop's summary plus the held-out report."""
    from search.vsm.crop_matcher import CropMatcher
    from training.loop import seed_everything, train

    prepare_run(synth, ccfg.train, "crop matcher")
    m = ccfg.matcher
    seed_everything(seed)
    model = CropMatcher(m)
    log(f"crop matcher: {sum(p.numel() for p in model.parameters()) / 1e3:.0f} k parameters, input {m.input_size} px, "
        f"{len(m.vocabulary)} words")
    images, labels = build_crops(synth, ccfg.data, m, seed, log)
    log(f"crop data: {len(images)} crops ({int((labels.sum(1) == 0).sum())} background)")
    val = held_out(synth, ccfg.data, m, seed, log)
    report: dict = {}

    def on_save(trained, out_dir: Path) -> None:
        export = Path(export_dir)
        trained.eval().save_pretrained(export, recipe=recipe_record(command))  # + its manifest
        copy_train_log(out_dir, export)
        if val is not None:
            report.update(evaluate(trained, *val, synth_kinds()))
            log(f"held-out val crops: {report}")
            (export / "metrics.json").write_text(json.dumps({"command": command, "val": report}, indent=2) + "\n")
        log(f"exported the crop matcher to {export}")

    seed_everything(seed)
    summary = train(model, make_epochs(len(images), ccfg.train.batch_size, seed, ccfg.hflip), loss_fn, ccfg.train,
                    collate=make_collate(images, labels), on_save=on_save)
    summary.update(crops=len(images), export_dir=str(export_dir), val=report)
    return summary
