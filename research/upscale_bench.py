"""A V*Bench-layout folder with every image scaled by an integer factor, its boxes scaled with it.

The search's growth with image size is measured on one set of scenes at several sizes: SynthVStar
draws scenes up to 8192 px on the long side (``seal bench synth --long-side 8192``); this makes the
16K copy of such a folder (the same scenes, every pixel repeated ``factor`` x ``factor`` times, so
the targets are as legible as in the source).

    python -m research.upscale_bench --src runs/i29_size_8192 --out runs/i29_size_16384 --factor 2
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from PIL import Image

Image.MAX_IMAGE_PIXELS = None  # our own synthetic scenes, up to 16K x 16K


def upscale_folder(src: Path, out: Path, factor: int) -> int:
    """Copy ``src`` (V*Bench layout: ``<category>/<name>.jpg`` + ``<name>.json``) to ``out`` with each
    image enlarged ``factor`` times (nearest neighbour) and each ``bbox`` ``[x, y, w, h]`` scaled.
    Other top-level files are copied as they are; folders without annotations are left out. Returns
    the number of images written."""
    if factor < 1:
        raise SystemExit(f"--factor: expected >= 1, found {factor}")
    out.mkdir(parents=True, exist_ok=False)
    n = 0
    for item in sorted(src.iterdir()):
        if item.is_file():
            shutil.copy2(item, out / item.name)
            continue
        anns = sorted(item.glob("*.json"))
        if anns:  # (a folder without annotations, e.g. synth_annotations' unscaled object lists, is left out)
            (out / item.name).mkdir()
        for ann in anns:
            meta = json.loads(ann.read_text(encoding="utf-8"))
            meta["bbox"] = [[v * factor for v in box] for box in meta["bbox"]]
            (out / item.name / ann.name).write_text(json.dumps(meta), encoding="utf-8")
            with Image.open(ann.with_suffix(".jpg")) as image:
                big = image.convert("RGB").resize((image.width * factor, image.height * factor), Image.NEAREST)
            big.save(out / item.name / ann.with_suffix(".jpg").name, quality=90)
            n += 1
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--factor", type=int, default=2)
    a = p.parse_args()
    print(f"wrote {upscale_folder(a.src, a.out, a.factor)} images to {a.out}")


if __name__ == "__main__":
    main()
