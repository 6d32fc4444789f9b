"""Does the search model tell a named object from the rest? Measured on VSM training-style rows of
SynthVStar VALIDATION scenes (never the test split):

    python -m research.vsm_separation --model checkpoints/vsm_tiny --n-scenes 10

- ``auc``: how well the best-box score ranks rows whose target is in the patch (legible) above rows
  whose named object is absent (near misses and names from elsewhere): 0.5 = blind, 1.0 = perfect;
- ``fires_present`` / ``fires_absent``: fraction of those rows whose best box scores above 0.5;
- ``attribute_accuracy`` (models with an attribute head, ``vsm.attribute_classes``): per channel,
  the fraction of object cells whose class the head reads right (pooled over all patches).

Prints one JSON line; ``--out`` also writes it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np


def measure(model_dir: str, n_scenes: int, config: str, cache_dir: str | None = None) -> dict:
    """The report of the module docstring for the VSM at ``model_dir`` on ``n_scenes`` val scenes cut
    by ``config``'s data rules (rendered scenes cached in ``cache_dir``, default the recipe's)."""
    import torch

    from search.vsm.losses import attribute_cell_hits
    from search.vsm.model import VSMModel
    from seal.config import command_config, load
    from training.vsm_data import ATTRIBUTE_ORDER, build_dataset, make_collate

    cfg = load([config], [] if cache_dir is None else [f"vsm_train.data.cache_dir={cache_dir}"], False,
               command_config("train-vsm"))  # seal train vsm's config: its synth, search, vsm_train
    model = VSMModel.from_pretrained(model_dir).eval()
    data_cfg = replace(cfg.vsm_train.data, attribute_maps=bool(model.cfg.attribute_classes))
    val = build_dataset(replace(cfg.synth, split="val", n=n_scenes), data_cfg, cfg.search, model.input_size,
                        model.heatmap_size, model.fill_color, log=lambda m: None)
    collate = make_collate(model, val)
    right = cells = np.zeros(0, dtype=np.int64)  # per attribute channel: right object cells, object cells
    present, absent = [], []
    with torch.no_grad():
        patches = [p for (p,) in val.epochs(1, 0)(0)]  # every patch with rows (epoch 0's order)
        for start in range(0, len(patches), 6):
            b = collate(patches[start:start + 6])  # 6 patches with all their rows
            out = model(b["input_ids"], b["attention_mask"], features=model.encode_images(b["pixel_values"]).rows(
                b["patch_index"]))
            t = b["targets"]
            if out.attributes is not None:
                h, n = attribute_cell_hits(out.attributes.split(list(out.attribute_classes), 1), t.attributes)
                right, cells = (np.array(h), np.array(n)) if not len(right) else (right + h, cells + n)
            best = out.box_logits.sigmoid().max(dim=1).values
            for r in range(len(t.boxes)):
                if bool(t.boxes_valid[r]):
                    (present if len(t.boxes[r]) else absent).append(float(best[r]))
    p, a = np.array(present), np.array(absent)
    auc = float((p[:, None] > a[None, :]).mean() + 0.5 * (p[:, None] == a[None, :]).mean())
    return {"model": model_dir, "scenes": n_scenes, "rows_present": len(p), "rows_absent": len(a),
            "auc": round(auc, 4), "fires_present": round(float((p > 0.5).mean()), 4),
            "fires_absent": round(float((a > 0.5).mean()), 4),
            "attribute_accuracy": {ATTRIBUTE_ORDER[c]: round(float(right[c] / cells[c]), 4)
                                   for c in range(len(right)) if cells[c]}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.vsm_separation", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--n-scenes", type=int, default=10)
    ap.add_argument("--config", default="configs/train/vsm/tiny.yaml", help="recipe whose data rules to use")
    ap.add_argument("--cache-dir", default=None, help="where rendered scenes are cached (default: the recipe's)")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    report = measure(args.model, args.n_scenes, args.config, args.cache_dir)
    line = json.dumps(report)
    print(line)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
