"""``OracleLocalizer``: a :class:`~search.localizer.Localizer` that knows the ground truth but
behaves like a real, imperfect model.

It reads a V*Bench per-sample JSON (``target_object`` names + ``bbox`` ``[x, y, w, h]`` pixels in the
upright image frame) and answers :meth:`locate` / :meth:`suggest_region` without looking at a pixel,
so it works on images of any size. What it simulates (all knobs in :class:`OracleConfig`):

- **Resolution.** A region is seen at ``input_size`` on its long side. A target instance is
  *detected* only when the visible part of its box spans ``>= min_legible_px`` input pixels on its
  shorter side and ``>= min_visible_fraction`` of its box lies inside the region. The detection is
  the visible part of the box (full-image ``xyxy``, jittered by ~3 % of its size) scored
  ``detect_score`` + Gaussian ``score_noise``, clipped to [0, 1].
- **Heatmap.** ``(heatmap_size, heatmap_size)`` float32 logits stretched over the region (row 0 =
  region top). Baseline ``-4``, Gaussian noise ``heatmap_noise``. A legible instance gives a sharp
  blob of peak ``cue_gain``; an instance that is in the region but illegible gives a blurred blob
  (sigma ``cue_blur`` x region long side, peak ``cue_gain`` x its visible fraction). Near-miss
  distractors from the SynthVStar sidecar get blobs of ``distractor_cue`` x that strength x their
  similarity to the target (fraction of shape / colour / pattern they share with it).
- **False positives.** When no instance is legible, with probability ``false_positive_rate`` a
  spurious box scoring uniformly in ``[0.05, false_positive_max_score]`` is returned.
- **Context cue** (:meth:`suggest_region`): with probability ``context_accuracy`` a broad blob
  (sigma ``2 * cue_blur`` x long side) around a true instance inside the region, else around a wrong
  place. When no instance is inside the region it still answers, around a random place: a real
  context model cannot know the target is absent, so returning ``None`` would leak ground truth.
  It returns ``None`` only for a target name the annotation does not know.

Every answer is a pure function of ``(seed, call kind, target, region rounded to pixels)``:
the same call gives the same answer, whatever the call order. :meth:`stats` counts patches as a
real predictor with a per-image feature cache keyed by region would (a second target, or a context
request, on an already encoded region is a cache hit).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from seal.core.geometry import Frame, area_xyxy, clip_xyxy, intersection_fraction_xyxy, xywh_to_xyxy
from seal.core.image_source import ImageSource
from search.localizer import BoxXYXY, Detection, LocalizerStats
from search.oracle_config import OracleConfig
from seal.core.errors import InputError

BASELINE_LOGIT = -4.0
"""Heatmap logit where there is no evidence at all."""
SIMILARITY_ATTRIBUTES = ("shape", "color", "pattern")
"""Sidecar attributes compared to weight a near miss's heatmap blob."""
BOX_JITTER = 0.03
"""Std of detection-box corner jitter, as a fraction of the box's width / height."""


def normalize_name(name: str) -> str:
    """Target names match case- and whitespace-insensitively."""
    return " ".join(str(name).lower().split())


class OracleLocalizer:
    """Ground-truth localizer with the failure modes of a real one (see module docstring).

    Args:
        targets: normalised name -> ``(N, 4)`` float64 full-image ``xyxy`` boxes (N instances).
        cfg: simulation knobs.
        distractors: normalised name -> ``(M, 5)`` near misses ``(x1, y1, x2, y2, similarity)``:
            full-image boxes and a weight in (0, 1] scaling their (weaker) heatmap blobs.
        source: the annotation file, named in errors.
    """

    name = "oracle"

    def __init__(self, targets: dict[str, np.ndarray], cfg: OracleConfig,
                 distractors: dict[str, np.ndarray] | None = None, source: str | None = None, seed: int = 0) -> None:
        self.cfg, self.seed = cfg, seed
        self.targets = {normalize_name(k): np.asarray(v, dtype=np.float64).reshape(-1, 4) for k, v in targets.items()}
        self.distractors = {normalize_name(k): np.asarray(v, dtype=np.float64).reshape(-1, 5)
                            for k, v in (distractors or {}).items()}
        self.source = source
        self.image_size: tuple[int, int] | None = None
        self._encoded: set[tuple[int, int, int, int]] = set()
        self._stats = _fresh_stats()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_annotation(cls, json_path: str | Path, cfg: OracleConfig, seed: int = 0) -> "OracleLocalizer":
        """Build from a V*Bench per-sample JSON, plus the SynthVStar sidecar when there is one.

        The sidecar is ``<root>/synth_annotations/<category>/<stem>.json`` with ``root`` the JSON's
        grandparent and ``category`` its folder name; its ``near_miss`` objects become distractors of
        each target they share at least one of ``shape`` / ``color`` / ``pattern`` with (weighted by
        the fraction shared; of every target, weight 1, when the attributes are not given).

        Raises:
            InputError: missing / malformed annotation or sidecar, naming the file.
        """
        path = Path(json_path)
        data = _read_json(path, "annotation")
        names, boxes = data.get("target_object"), data.get("bbox")
        if not isinstance(names, list) or not isinstance(boxes, list):
            raise InputError("expected V*Bench fields 'target_object' (list of names) and 'bbox' (list of "
                             f"[x, y, w, h]), found keys {sorted(data)}", path)
        if len(names) != len(boxes):
            raise InputError(f"'target_object' has {len(names)} names but 'bbox' has {len(boxes)} boxes", path)
        targets: dict[str, list[np.ndarray]] = {}
        for i, (name, box) in enumerate(zip(names, boxes)):
            if not isinstance(name, str) or not name.strip():
                raise InputError(f"target_object[{i}]: expected a non-empty name, found {name!r}", path)
            targets.setdefault(normalize_name(name), []).append(_xywh_box(box, f"bbox[{i}]", path))
        sidecar = sidecar_path(path)
        distractors = _sidecar_distractors(sidecar, set(targets)) if sidecar.is_file() else {}
        return cls({k: np.stack(v) for k, v in targets.items()}, cfg, distractors, source=str(path), seed=seed)

    @property
    def target_names(self) -> list[str]:
        return list(self.targets)

    # ------------------------------------------------------------------ Localizer protocol
    def set_image(self, image: ImageSource) -> None:
        """Bind the image (only its size is used) and clear the feature cache and stats.

        Raises:
            InputError: an annotated box lies entirely outside the image (annotation of another image).
        """
        w, h = image.size
        for name, boxes in self.targets.items():
            for box in boxes:
                if intersection_fraction_xyxy(box, (0, 0, w, h)) <= 0.0:
                    raise InputError(f"annotated box {box.round(1).tolist()} of {name!r} lies outside the "
                                     f"{w}x{h} image; is this the annotation of {image.path or 'this image'}?",
                                     self.source)
        self.image_size = (w, h)
        self._encoded = set()
        self._stats = _fresh_stats()

    def locate(self, target: str, regions: Sequence[BoxXYXY]) -> list[Detection]:
        """One :class:`Detection` per region (boxes full-image ``xyxy``, heatmap over the region)."""
        self._stats.extra["locate_calls"] += 1
        key = normalize_name(target)
        out = []
        for region in regions:
            region = _region(region)
            self._encode(region)
            out.append(self._detect(key, region))
        return out

    def suggest_region(self, target: str, region: BoxXYXY) -> np.ndarray | None:
        """``(heatmap_size, heatmap_size)`` float32 logits over ``region`` for where ``target`` likely
        is, or ``None`` for a name the annotation does not know."""
        self._stats.extra["context_calls"] += 1
        key = normalize_name(target)
        region = _region(region)
        self._encode(region)
        if key not in self.targets:
            return None
        rng = self._rng("context", key, region)
        long_side = max(region[2] - region[0], region[3] - region[1])
        inside = [b for b in self._visible_parts(self.targets[key], region) if b is not None]
        if inside and rng.random() < self.cfg.context_accuracy:
            vis = inside[int(rng.integers(len(inside)))]
            centre = np.array([(vis[0] + vis[2]) / 2, (vis[1] + vis[3]) / 2]) + rng.normal(0, 0.05 * long_side, 2)
        else:
            centre = self._wrong_place(rng, region, inside)
        heat = np.full((self.cfg.heatmap_size,) * 2, BASELINE_LOGIT, dtype=np.float64)
        heat = np.maximum(heat, self._blob(region, centre, 2 * self.cfg.cue_blur * long_side, self.cfg.cue_gain))
        return self._noisy(heat, rng)

    def stats(self) -> LocalizerStats:
        return self._stats.snapshot()

    # ------------------------------------------------------------------ simulation
    def _detect(self, key: str, region: BoxXYXY) -> Detection:
        cfg = self.cfg
        rng = self._rng("locate", key, region)
        long_side = max(region[2] - region[0], region[3] - region[1])
        scale = cfg.input_size / long_side  # input pixels per full-image pixel
        heat = np.full((cfg.heatmap_size,) * 2, BASELINE_LOGIT, dtype=np.float64)
        boxes, scores = [], []
        instances = self.targets.get(key, np.zeros((0, 4)))
        for box, vis in zip(instances, self._visible_parts(instances, region)):
            if vis is None:
                continue
            fraction = intersection_fraction_xyxy(box, region)
            short_px = min(vis[2] - vis[0], vis[3] - vis[1]) * scale
            centre = ((vis[0] + vis[2]) / 2, (vis[1] + vis[3]) / 2)
            if short_px >= cfg.min_legible_px and fraction >= cfg.min_visible_fraction:
                size = np.array([vis[2] - vis[0], vis[3] - vis[1]] * 2)
                boxes.append(vis + rng.normal(0, BOX_JITTER, 4) * size)
                scores.append(float(np.clip(rng.normal(cfg.detect_score, cfg.score_noise), 0.0, 1.0)))
                sigma = max(vis[2] - vis[0], vis[3] - vis[1]) / 2
                heat = np.maximum(heat, self._blob(region, centre, sigma, cfg.cue_gain))
            else:
                heat = np.maximum(heat, self._blob(region, centre, cfg.cue_blur * long_side, cfg.cue_gain * fraction))
        near = self.distractors.get(key, np.zeros((0, 5)))
        for vis, similarity in zip(self._visible_parts(near[:, :4], region), near[:, 4]):
            if vis is not None:
                centre = ((vis[0] + vis[2]) / 2, (vis[1] + vis[3]) / 2)
                peak = cfg.distractor_cue * cfg.cue_gain * similarity
                heat = np.maximum(heat, self._blob(region, centre, cfg.cue_blur * long_side, peak))
        if boxes:
            self._stats.extra["true_detections"] += len(boxes)
        elif rng.random() < cfg.false_positive_rate:
            boxes.append(self._spurious_box(rng, region))
            scores.append(float(rng.uniform(0.05, cfg.false_positive_max_score)))
            self._stats.extra["false_positives"] += 1
        return Detection(np.array(boxes).reshape(-1, 4), np.array(scores), self._noisy(heat, rng))

    def _visible_parts(self, boxes: np.ndarray, region: BoxXYXY) -> list[np.ndarray | None]:
        """Each box intersected with ``region`` (full-image ``xyxy``), or None when they do not overlap."""
        frame = Frame(region, 1, 1)
        out: list[np.ndarray | None] = []
        for box in boxes:
            local = clip_xyxy(frame.full_to_region_xyxy(box), frame.region_w, frame.region_h)
            out.append(frame.region_to_full_xyxy(local) if area_xyxy(local) > 0 else None)
        return out

    def _blob(self, region: BoxXYXY, centre_xy: Sequence[float], sigma_px: float, peak: float) -> np.ndarray:
        """``(S, S)`` logits: a Gaussian of ``peak`` at ``centre_xy`` (full-image px) over the baseline."""
        s = self.cfg.heatmap_size
        x0, y0, x1, y1 = region
        xs = x0 + (np.arange(s) + 0.5) * (x1 - x0) / s  # cell centres, full-image px
        ys = y0 + (np.arange(s) + 0.5) * (y1 - y0) / s
        sigma = max(sigma_px, 1e-6)
        g = np.exp(-((ys[:, None] - centre_xy[1]) ** 2 + (xs[None, :] - centre_xy[0]) ** 2) / (2 * sigma**2))
        return BASELINE_LOGIT + (peak - BASELINE_LOGIT) * g

    def _noisy(self, heat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (heat + rng.normal(0, self.cfg.heatmap_noise, heat.shape)).astype(np.float32)

    def _spurious_box(self, rng: np.random.Generator, region: BoxXYXY) -> np.ndarray:
        x0, y0, x1, y1 = region
        w, h = (x1 - x0) * rng.uniform(0.05, 0.2), (y1 - y0) * rng.uniform(0.05, 0.2)
        x, y = rng.uniform(x0, x1 - w), rng.uniform(y0, y1 - h)
        return np.array([x, y, x + w, y + h])

    def _wrong_place(self, rng: np.random.Generator, region: BoxXYXY, inside: list[np.ndarray]) -> np.ndarray:
        """A random point of the region, away from every true instance when the region allows it."""
        x0, y0, x1, y1 = region
        far = 0.3 * max(x1 - x0, y1 - y0)
        point = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])
        for _ in range(16):
            if all(np.hypot(point[0] - (b[0] + b[2]) / 2, point[1] - (b[1] + b[3]) / 2) >= far for b in inside):
                break
            point = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])
        return point

    def _encode(self, region: BoxXYXY) -> None:
        key = tuple(int(round(v)) for v in region)
        if key in self._encoded:
            self._stats.encode_cache_hits += 1
        else:
            self._encoded.add(key)  # type: ignore[arg-type]
            self._stats.patches_encoded += 1

    def _rng(self, kind: str, key: str, region: BoxXYXY) -> np.random.Generator:
        rounded = ",".join(str(int(round(v))) for v in region)
        digest = hashlib.sha256(f"{self.seed}|{kind}|{key}|{rounded}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _fresh_stats() -> LocalizerStats:
    return LocalizerStats(extra={"locate_calls": 0, "context_calls": 0, "true_detections": 0, "false_positives": 0})


def _region(region: Sequence[float]) -> BoxXYXY:
    x0, y0, x1, y1 = (float(v) for v in region)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"region must be xyxy with positive size, got {tuple(region)}")
    return (x0, y0, x1, y1)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{what} file not found", path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"malformed {what} JSON ({str(exc).splitlines()[0]})", path) from None
    if not isinstance(data, dict):
        raise InputError(f"{what}: expected a JSON object, found {type(data).__name__}", path)
    return data


def _xywh_box(box: Any, field: str, path: Path) -> np.ndarray:
    ok = isinstance(box, (list, tuple)) and len(box) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in box)
    if not ok or box[2] <= 0 or box[3] <= 0:
        raise InputError(f"{field}: expected [x, y, w, h] with w, h > 0, found {box!r}", path)
    return xywh_to_xyxy(box)


def sidecar_path(json_path: str | Path) -> Path:
    """The SynthVStar sidecar of a V*Bench per-sample JSON: ``<root>/synth_annotations/<category>/<stem>.json``
    with ``root`` the JSON's grandparent (it need not exist)."""
    path = Path(json_path)
    return path.parent.parent / "synth_annotations" / path.parent.name / path.name


def _sidecar_distractors(path: Path, target_keys: set[str]) -> dict[str, np.ndarray]:
    """Near misses of the SynthVStar sidecar per target: ``(M, 5)`` rows ``(x1, y1, x2, y2, similarity)``."""
    objects = _read_json(path, "SynthVStar sidecar").get("objects")
    if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
        raise InputError("SynthVStar sidecar: expected an 'objects' list of objects", path)
    truth = {normalize_name(o.get("name", "")): o for o in objects if o.get("role") == "target"}
    out: dict[str, list[np.ndarray]] = {}
    for i, obj in enumerate(objects):
        if obj.get("role") != "near_miss":
            continue
        box = _xywh_box(obj.get("bbox"), f"objects[{i}].bbox", path)
        for key in target_keys:
            target = truth.get(key, {})
            known = [a for a in SIMILARITY_ATTRIBUTES if target.get(a) is not None and obj.get(a) is not None]
            similarity = sum(target[a] == obj[a] for a in known) / len(known) if known else 1.0
            if similarity > 0:
                out.setdefault(key, []).append(np.append(box, similarity))
    return {k: np.stack(v) for k, v in out.items()}
