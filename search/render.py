"""PNG renderings of a search trace, for people to look at.

All inputs are in the full-image pixel frame (upright): node ``box_xyxy`` attributes of
``trace.graph`` and the graph's ``box_xyxy`` (the found box). Pixels come from
:meth:`ImageSource.crop_resized`, so only small ``uint8`` patches are ever materialised, never a
float copy of the image. Every function returns the list of paths it wrote.

- :func:`render_overview`: the (downscaled) image with every visited node's box, numbered by visit
  order and coloured by level, and the found box highlighted.
- :func:`render_heatmaps`: per visited node with a heatmap, its patch with ``sigmoid(logits)``
  overlaid as a colour map (and the node's best box, if any).
- :func:`render_final_crop`: the found box with some context around it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from seal.core.geometry import Frame, clip_xyxy
from seal.core.image_source import ImageSource

LEVEL_COLOURS = [(255, 215, 0), (0, 200, 255), (255, 105, 180), (160, 130, 255), (255, 140, 0), (120, 255, 120)]
FOUND_COLOUR = (0, 255, 0)
BEST_COLOUR = (255, 0, 0)


def target_folder(out_dir: str | Path, index: int, target: str) -> Path:
    """``out_dir/<index:02d>_<slug of target>``: the folder of one target's search trace."""
    slug = re.sub(r"[^a-z0-9]+", "_", target.lower()).strip("_")[:40] or "target"
    return Path(out_dir) / f"{index:02d}_{slug}"


def write_search_trace(image: ImageSource, trace: Any, folder: str | Path) -> Path:
    """One search into ``folder``: ``trace.json``, ``search_graph.graphml`` and :func:`render_all`'s PNGs."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    trace.write_json(out / "trace.json")
    trace.write_graphml(out / "search_graph.graphml")
    render_all(image, trace, out)
    return out


def render_all(image: ImageSource, trace: Any, out_dir: str | Path) -> list[Path]:
    """Overview, per-step heatmaps and the final crop, into ``out_dir``."""
    out = Path(out_dir)
    return (render_overview(image, trace, out / "search_overview.png")
            + render_heatmaps(image, trace, out / "heatmaps")
            + render_final_crop(image, trace, out / "final_crop.png"))


def visited_in_order(trace: Any) -> list[int]:
    """Node ids of ``trace.graph`` with ``visit_order > 0``, in visit order."""
    g = trace.graph
    visited = [n for n, a in g.nodes(data=True) if int(a.get("visit_order", 0)) > 0]
    return sorted(visited, key=lambda n: g.nodes[n]["visit_order"])


def render_overview(image: ImageSource, trace: Any, path: str | Path, max_side: int = 1600) -> list[Path]:
    """The image downscaled to ``<= max_side`` px on its long side, with the visited boxes drawn.

    Boxes are outlined in their level's colour and labelled with their visit order; the found box
    (graph attribute ``box_xyxy``) is drawn thick in green.
    """
    w, h = image.size
    scale = min(1.0, max_side / max(w, h))
    out_w, out_h = max(1, round(w * scale)), max(1, round(h * scale))
    pixels, frame = image.crop_resized(image.full_box(), out_w, out_h, letterbox=False)
    canvas = Image.fromarray(pixels)
    draw = ImageDraw.Draw(canvas)
    font = _font(max(12, out_w // 80))
    g = trace.graph
    for node in visited_in_order(trace):
        attrs = g.nodes[node]
        box = _to_canvas(frame, attrs["box_xyxy"], out_w, out_h)
        colour = LEVEL_COLOURS[int(attrs.get("level", 0)) % len(LEVEL_COLOURS)]
        draw.rectangle(box, outline=colour, width=max(1, out_w // 400))
        label = str(attrs["visit_order"])
        tx, ty = box[0] + 3, box[1] + 2
        tb = draw.textbbox((tx, ty), label, font=font)
        draw.rectangle(tb, fill=(0, 0, 0))
        draw.text((tx, ty), label, fill=colour, font=font)
    found_box = g.graph.get("box_xyxy") or []
    if len(found_box) == 4:
        width = max(2, out_w // 400)
        x0, y0, x1, y1 = _to_canvas(frame, found_box, out_w, out_h, min_size=4)
        # drawn just outside the box so the target itself stays visible
        draw.rectangle([x0 - width, y0 - width, x1 + width, y1 + width], outline=FOUND_COLOUR, width=width)
    return [_save(canvas, path)]


def render_heatmaps(image: ImageSource, trace: Any, out_dir: str | Path, max_side: int = 512,
                    alpha: float = 0.5) -> list[Path]:
    """``step_<order>_node<id>.png`` per visited node that has a heatmap in ``trace.heatmaps``.

    Each PNG is the node's patch (long side ``<= max_side`` px, aspect kept) blended with
    ``applyColorMap(sigmoid(heatmap))`` resized to the patch; the node's best box is drawn in red.
    """
    import cv2

    out = Path(out_dir)
    paths = []
    g = trace.graph
    for node in visited_in_order(trace):
        heat = trace.heatmaps.get(node)
        if heat is None:
            continue
        attrs = g.nodes[node]
        x0, y0, x1, y1 = attrs["box_xyxy"]
        scale = min(1.0, max_side / max(x1 - x0, y1 - y0))
        pw, ph = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
        patch, frame = image.crop_resized((x0, y0, x1, y1), pw, ph, letterbox=False)
        prob = 1.0 / (1.0 + np.exp(-np.asarray(heat, dtype=np.float32)))  # (h, w) in [0, 1]
        heat_u8 = cv2.resize((prob * 255).astype(np.uint8), (pw, ph), interpolation=cv2.INTER_LINEAR)
        coloured = cv2.cvtColor(cv2.applyColorMap(heat_u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
        blended = cv2.addWeighted(patch, 1.0 - alpha, coloured, alpha, 0.0)
        canvas = Image.fromarray(blended)
        best = attrs.get("best_box_xyxy") or []
        if len(best) == 4:
            ImageDraw.Draw(canvas).rectangle(_to_canvas(frame, best, pw, ph, min_size=3), outline=BEST_COLOUR, width=2)
        paths.append(_save(canvas, out / f"step_{int(attrs['visit_order']):03d}_node{node}.png"))
    return paths


def render_final_crop(image: ImageSource, trace: Any, path: str | Path, context: float = 1.0,
                      min_side: int = 64, max_side: int = 512) -> list[Path]:
    """The found box plus ``context`` x its size on every side (at least ``min_side`` px in all),
    clipped to the image, at ``<= max_side`` px; the box outlined in green. Nothing when not found."""
    box = trace.graph.graph.get("box_xyxy") or []
    if len(box) != 4:
        return []
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w = max((x1 - x0) * (0.5 + context), min_side / 2)
    half_h = max((y1 - y0) * (0.5 + context), min_side / 2)
    region = clip_xyxy([cx - half_w, cy - half_h, cx + half_w, cy + half_h], image.width, image.height)
    rx0, ry0, rx1, ry1 = region.tolist()
    if rx1 - rx0 < 1 or ry1 - ry0 < 1:
        return []
    scale = max_side / max(rx1 - rx0, ry1 - ry0)
    cw, ch = max(1, round((rx1 - rx0) * scale)), max(1, round((ry1 - ry0) * scale))
    pixels, frame = image.crop_resized((rx0, ry0, rx1, ry1), cw, ch, letterbox=False)
    canvas = Image.fromarray(pixels)
    ImageDraw.Draw(canvas).rectangle(_to_canvas(frame, box, cw, ch, min_size=3), outline=FOUND_COLOUR, width=2)
    return [_save(canvas, path)]


def _to_canvas(frame: Frame, box_xyxy: Any, w: int, h: int, min_size: float = 1.0) -> list[float]:
    """A full-image box in the canvas's pixels, clipped, at least ``min_size`` px wide and tall."""
    b = clip_xyxy(frame.full_to_input_xyxy(box_xyxy), w - 1, h - 1)
    x0, y0, x1, y1 = b.tolist()
    if x1 - x0 < min_size:
        x0, x1 = max(0.0, (x0 + x1 - min_size) / 2), min(w - 1.0, (x0 + x1 + min_size) / 2)
    if y1 - y0 < min_size:
        y0, y1 = max(0.0, (y0 + y1 - min_size) / 2), min(h - 1.0, (y0 + y1 + min_size) / 2)
    return [x0, y0, max(x0, x1), max(y0, y1)]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _save(img: Image.Image, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    img.save(p, format="PNG")
    return p
