"""Entropy-based adaptive patch selection (seed 003): which parts of an image get fine or coarse patches.

An image is cut into a grid of the smallest patches (level ``L1``, ``H1 x W1`` cells of ``p x p`` px);
``L2`` patches cover 2 x 2 ``L1`` cells, ``L3`` patches 4 x 4 (``H1`` and ``W1`` must be multiples of
4). Each ``L1`` cell's score is the Shannon entropy (bits) of its grey-level histogram
(:func:`patch_entropy`: BT.601 grey levels 0..255 split into ``bins`` equal bins); the ``L2`` / ``L3``
scores are the 2 x 2 / 4 x 4 average pools of that map (:func:`pool_mean`). Scores propagate
upwards: an ``L3`` patch scores ``max(own pooled entropy, max of its four L2 children)``, so a small
detailed region is not averaged away by its flat surroundings and opens its parent.

The selection is a *cascade*: every part of the image is covered by exactly one kept patch. It starts
from all ``L3`` patches (``base_tokens = H1 * W1 / 16``, the fewest tokens that cover the image) and
splits some of them into their four ``L2`` children, and some split ``L2`` patches into their four
``L1`` children. Each split (one patch -> four) adds 3 tokens. Three modes decide the splits
(:class:`EntropyConfig`):

- ``v1``: fixed thresholds. An ``L3`` patch stays whole when its (propagated) score is below
  ``thresholds[1]``; otherwise each of its ``L2`` children stays whole when its entropy is below
  ``thresholds[0]``, else it is split into ``L1`` cells.
- ``v2``: the same rule with both thresholds ``alpha * mean(L3 entropy)`` (the image's mean entropy),
  so a larger ``alpha`` keeps more patches coarse (fewer tokens).
- ``budget``: ``budget = round(alpha * H1 * W1)`` tokens. ``k = (budget - base_tokens) // 3`` splits
  are allowed (the budget above the ``L3`` base, 3 tokens per split); they go to the ``k``
  highest-scoring candidates among all ``L3`` (propagated score) and ``L2`` patches, one global
  ranking; ties rank ``L3`` before ``L2`` and then raster order, so a child is never split without its
  parent. Kept tokens = ``base_tokens + 3 * k``, within 2 of the budget (``base_tokens`` when the
  budget is below it). Flat regions are split too once the detailed ones are: the budget is spent.

:class:`BudgetStats` records the arithmetic per image. :func:`token_groups` turns a selection into the
groups of ``L1`` cells each kept patch covers (what a fixed-grid vision tower's keep-mask needs,
:mod:`seal.vqa.token_keep`). :func:`select_token_grid` selects over a fixed-grid tower's square token grid
(LLaVA's CLIP), :func:`select_merged_grid` over a Qwen2.5-VL style merged-token grid, each from the
processor's own pixels (the VQA model's cut and the cost ledger call the same function). numpy only (no torch).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

from seal.core.errors import ConfigError

Mode = Literal["v1", "v2", "budget"]
MODES: tuple[str, ...] = ("v1", "v2", "budget")
LEVELS: tuple[str, ...] = ("L1", "L2", "L3")
"""Level names, finest first; an ``Ln`` patch covers ``2 ** (n - 1)`` cells per side."""
GREY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights of R, G, B."""


@dataclass(frozen=True)
class EntropyConfig:
    """How patches are selected (``vision_budget.entropy``)."""

    mode: Mode = "budget"
    """``v1`` fixed thresholds, ``v2`` thresholds ``alpha * mean entropy``, ``budget`` about
    ``alpha * H1 * W1`` tokens."""
    alpha: float = 0.5
    """``budget``: share of the finest grid's cells spent as tokens (``0 < alpha <= 1``); ``v2``: the
    multiple of the image's mean entropy under which a patch stays coarse (``> 0``); unused by ``v1``."""
    thresholds: tuple[float, float] = (3.0, 2.0)
    """``v1``: entropy (bits) under which an ``L2`` / an ``L3`` patch stays whole."""
    bins: int = 256
    """Histogram bins over the grey levels 0..255 (256: one bin per 8-bit level; entropy <= log2(bins))."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"vision_budget.entropy.mode: expected one of {', '.join(MODES)}, found {self.mode!r}")
        if not self.alpha > 0:
            raise ConfigError(f"vision_budget.entropy.alpha: expected > 0, found {self.alpha}")
        if self.mode == "budget" and self.alpha > 1:
            raise ConfigError(f"vision_budget.entropy.alpha: expected 0 < alpha <= 1 in budget mode, "
                              f"found {self.alpha}")
        if len(self.thresholds) != 2 or any(not t >= 0 for t in self.thresholds):
            raise ConfigError(f"vision_budget.entropy.thresholds: expected two entropies >= 0 (L2, L3), "
                              f"found {self.thresholds!r}")
        if not 2 <= self.bins <= 256:
            raise ConfigError(f"vision_budget.entropy.bins: expected 2..256, found {self.bins}")


@dataclass(frozen=True)
class BudgetStats:
    """The token arithmetic of one image's selection."""

    mode: str
    """The mode that selected (``v1``, ``v2``, ``budget``)."""
    alpha: float | None
    """``alpha`` of ``v2`` / ``budget`` (None for ``v1``)."""
    base_small_tokens: int
    """``H1 * W1``: tokens if every cell were a smallest patch."""
    base_tokens: int
    """``H1 * W1 / 16``: tokens if every patch were an ``L3`` patch (the floor)."""
    budget: int | None
    """``round(alpha * H1 * W1)`` (``budget`` mode; None otherwise)."""
    k: int | None
    """Splits the budget allows, ``max(0, (budget - base_tokens) // 3)`` (``budget`` mode; None otherwise)."""
    splits_l3: int
    """``L3`` patches split into four ``L2`` patches."""
    splits_l2: int
    """``L2`` patches split into four ``L1`` cells."""
    extra_l2: int
    """Tokens the ``L3`` splits added (``3 * splits_l3``)."""
    extra_l1: int
    """Tokens the ``L2`` splits added (``3 * splits_l2``)."""
    kept_per_level: dict[str, int]
    """Kept patches per level (``L1``, ``L2``, ``L3``)."""
    kept_tokens: int
    """``base_tokens + extra_l2 + extra_l1``: the tokens the selection keeps (one per kept patch)."""
    thresholds: tuple[float, float] | None
    """The (L2, L3) thresholds ``v1`` / ``v2`` used (None for ``budget``)."""

    @property
    def kept_share(self) -> float:
        """``kept_tokens / base_small_tokens``."""
        return self.kept_tokens / self.base_small_tokens

    def to_dict(self) -> dict:
        return {**asdict(self), "kept_share": self.kept_share}


@dataclass(frozen=True)
class PatchSelection:
    """Kept patches per level (True = this patch is one token) and the arithmetic behind them."""

    l1: np.ndarray
    """(H1, W1) bool: kept smallest patches."""
    l2: np.ndarray
    """(H1 / 2, W1 / 2) bool: kept ``L2`` patches."""
    l3: np.ndarray
    """(H1 / 4, W1 / 4) bool: kept ``L3`` patches."""
    stats: BudgetStats

    def level_map(self) -> np.ndarray:
        """(H1, W1) int: the level (1, 2, 3) of the kept patch covering each cell."""
        return (self.l1 * 1 + _up(self.l2, 2) * 2 + _up(self.l3, 4) * 3).astype(np.int64)

    def boxes(self, patch: int) -> list[tuple[str, int, int, int, int]]:
        """``(level, x0, y0, x1, y1)`` of every kept patch in pixels (``xyxy``, exclusive ends) for
        cells of ``patch`` px, coarse levels first, raster order within a level."""
        out = []
        for name, mask, side in (("L3", self.l3, 4 * patch), ("L2", self.l2, 2 * patch), ("L1", self.l1, patch)):
            for r, c in zip(*np.nonzero(mask)):
                out.append((name, int(c) * side, int(r) * side, (int(c) + 1) * side, (int(r) + 1) * side))
        return out


def grey_levels(rgb: np.ndarray) -> np.ndarray:
    """(H, W) float64 BT.601 grey levels of an (H, W, 3) RGB image with values in 0..255."""
    return np.asarray(rgb, dtype=np.float64) @ np.asarray(GREY_WEIGHTS)


def patch_entropy(grey: np.ndarray, patch: int, bins: int = 256) -> np.ndarray:
    """Entropy map of the smallest patches.

    Args:
        grey: (H, W) grey levels in 0..255 (values outside are clipped), ``H`` and ``W`` multiples of
            ``patch``.
        patch: cell side in px.
        bins: histogram bins splitting 0..256 into equal widths (level ``v`` falls in bin
            ``floor(v * bins / 256)``).

    Returns:
        (H / patch, W / patch) float64: Shannon entropy in bits of each cell's grey-level histogram
        (0 for a flat cell, at most ``log2(min(bins, patch ** 2))``).
    """
    h, w = grey.shape
    if h % patch or w % patch:
        raise ValueError(f"image {w}x{h} px is not a whole number of {patch} px cells")
    gh, gw = h // patch, w // patch
    q = np.clip(np.floor(np.asarray(grey, dtype=np.float64) * (bins / 256.0)), 0, bins - 1).astype(np.int64)
    cell = (np.arange(h)[:, None] // patch) * gw + np.arange(w)[None, :] // patch  # (H, W) cell index
    hist = np.bincount((cell * bins + q).ravel(), minlength=gh * gw * bins).reshape(gh * gw, bins)
    p = hist / float(patch * patch)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    return (ent + 0.0).reshape(gh, gw)  # + 0.0: no -0.0 for flat cells


def pool_mean(m: np.ndarray, f: int) -> np.ndarray:
    """(H / f, W / f) mean of each ``f x f`` block of ``m`` (H, W)."""
    h, w = m.shape
    return m.reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def select_patches(entropy: np.ndarray, cfg: EntropyConfig) -> PatchSelection:
    """The cascade's kept patches for one image's ``L1`` entropy map (module docstring).

    Args:
        entropy: (H1, W1) entropy (bits) of the smallest patches, ``H1`` and ``W1`` multiples of 4.
        cfg: mode, alpha, thresholds.
    """
    h1, w1 = entropy.shape
    if h1 % 4 or w1 % 4 or h1 == 0 or w1 == 0:
        raise ValueError(f"the cascade needs a grid of smallest patches whose sides are multiples of 4, "
                         f"found {h1}x{w1}")
    e1 = np.asarray(entropy, dtype=np.float64)
    e2, e3 = pool_mean(e1, 2), pool_mean(e1, 4)
    base, small = e3.size, e1.size
    score3 = np.maximum(e3, _pool_max(e2, 2))  # propagation: a detailed L2 child opens its parent
    budget = k = thresholds = None
    if cfg.mode == "budget":
        budget = int(round(cfg.alpha * small))
        k = max(0, (budget - base) // 3)
        split3, split2 = _top_splits(e2, score3, k)
    else:
        thresholds = tuple(cfg.thresholds) if cfg.mode == "v1" else (cfg.alpha * float(e3.mean()),) * 2
        split3 = ~(score3 < thresholds[1])
        split2 = ~(e2 < thresholds[0]) & _up(split3, 2)
    l3, l2, l1 = ~split3, _up(split3, 2) & ~split2, _up(split2, 2)
    s3, s2 = int(split3.sum()), int(split2.sum())
    stats = BudgetStats(mode=cfg.mode, alpha=None if cfg.mode == "v1" else float(cfg.alpha),
                        base_small_tokens=small, base_tokens=base, budget=budget, k=k, splits_l3=s3, splits_l2=s2,
                        extra_l2=3 * s3, extra_l1=3 * s2,
                        kept_per_level={"L1": int(l1.sum()), "L2": int(l2.sum()), "L3": int(l3.sum())},
                        kept_tokens=base + 3 * (s3 + s2),
                        thresholds=None if thresholds is None else (float(thresholds[0]), float(thresholds[1])))
    return PatchSelection(l1=l1, l2=l2, l3=l3, stats=stats)


def levels_from_pixels(pixels_hwc: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(H, W, 3) float64 0..255 levels of a processor's normalised pixels (H, W, 3), given its
    ``image_mean`` / ``image_std``."""
    m, sd = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    return np.clip((np.asarray(pixels_hwc, dtype=np.float64) * sd + m) * 255.0, 0.0, 255.0)


def select_image_patches(rgb: np.ndarray, patch: int, cfg: EntropyConfig) -> PatchSelection:
    """:func:`select_patches` of an (H, W, 3) RGB image (0..255, ``H`` and ``W`` multiples of ``4 * patch``)."""
    return select_patches(patch_entropy(grey_levels(rgb), patch, cfg.bins), cfg)


def select_token_grid(pixels_chw: np.ndarray, n_tokens: int, cfg: EntropyConfig, mean: Sequence[float],
                      std: Sequence[float]) -> PatchSelection:
    """The selection over a vision tower's square token grid: one smallest patch per output token.

    Args:
        pixels_chw: (3, S, S) a processor's normalised pixels (its ``image_mean`` / ``image_std``).
        n_tokens: the tower's output tokens for them, ``g * g`` with ``g`` a multiple of 4 dividing ``S``.

    Raises:
        ConfigError: a grid the cascade cannot cover.
    """
    side, g = pixels_chw.shape[-1], math.isqrt(n_tokens)
    if g * g != n_tokens or g % 4 or side % g or pixels_chw.shape[-2] != side:
        raise ConfigError(f"vision_budget.pruning_mode: entropy needs a square token grid with a side that is a "
                          f"multiple of 4 over a square image; found {n_tokens} tokens over {pixels_chw.shape[-1]}x"
                          f"{pixels_chw.shape[-2]} px")
    levels = levels_from_pixels(np.asarray(pixels_chw).transpose(1, 2, 0), mean, std)
    return select_image_patches(levels, side // g, cfg)


def select_merged_grid(patches: np.ndarray, grid_thw: Sequence[int], cfg: EntropyConfig, mean: Sequence[float],
                       std: Sequence[float], patch: int, merge: int, temporal: int) -> PatchSelection:
    """The selection over one image's merged-token grid of a Qwen2.5-VL style tower (patches of ``patch`` px,
    ``merge x merge`` of them merged into one token): one smallest patch per merged token, ``merge * patch`` px.

    Args:
        patches: (t * h * w, 3 * temporal * patch * patch) the image's rows of the processor's flattened
            ``pixel_values`` (normalised with its ``image_mean`` / ``image_std``), stored in the order
            (t, h / merge, w / merge, merge, merge) with each row laid out (C, temporal, patch, patch).
        grid_thw: the image's ``(t, h, w)`` in patches (its ``image_grid_thw`` row); the first frame is read.

    Returns:
        the selection over the ``(h / merge) x (w / merge)`` grid, raster order = the merged tokens' order.

    Raises:
        ConfigError: a merged grid whose sides are not multiples of 4 (the cascade's ``L3`` patch).
    """
    t, h, w = (int(v) for v in grid_thw)
    gh, gw = h // merge, w // merge
    if gh % 4 or gw % 4 or gh == 0 or gw == 0:
        raise ConfigError(f"vision_budget.pruning_mode: entropy needs a merged-token grid with sides that are "
                          f"multiples of 4 (views of multiples of {4 * merge * patch} px); an image has {gh}x{gw}")
    rows = np.asarray(patches)[:t * h * w].reshape(t, gh, gw, merge, merge, 3, temporal, patch, patch)
    first = rows[0, ..., 0, :, :]  # (gh, gw, m, m, C, p, p): the first frame
    image = first.transpose(0, 2, 5, 1, 3, 6, 4).reshape(h * patch, w * patch, 3)  # (gh, m, p, gw, m, p, C)
    return select_image_patches(levels_from_pixels(image, mean, std), merge * patch, cfg)


def token_groups(selection: PatchSelection) -> list[np.ndarray]:
    """The ``L1`` cells (raster indices into the ``H1 x W1`` grid) each kept patch covers: one group
    per kept token, ordered by each group's first cell (so fine tokens keep their grid order and a
    coarse patch sits at its top-left cell). Group sizes: 1 (``L1``), 4 (``L2``), 16 (``L3``)."""
    h1, w1 = selection.l1.shape
    idx = np.arange(h1 * w1).reshape(h1, w1)
    groups = [np.array([i]) for i in idx[selection.l1]]
    for mask, f in ((selection.l2, 2), (selection.l3, 4)):
        blocks = idx.reshape(h1 // f, f, w1 // f, f).transpose(0, 2, 1, 3).reshape(h1 // f, w1 // f, f * f)
        groups += list(blocks[mask])
    return sorted(groups, key=lambda g: int(g.min()))


def merge_token_groups(feats: "torch.Tensor", selection: PatchSelection) -> "torch.Tensor":
    """(K, D) one token per kept patch of ``selection`` (over the grid of ``feats``, (N, D) tokens in
    raster order): the mean of the rows its cells cover (a kept smallest patch: its own row,
    unchanged), in the order of :func:`token_groups`. Shared by the VQA model's cut
    (:mod:`seal.vqa.token_keep`) and the search model's (:mod:`search.vsm.token_cut`)."""
    import torch

    rows = [feats[int(group[0])] if len(group) == 1 else
            feats[torch.as_tensor(group, device=feats.device)].float().mean(0).to(feats.dtype)
            for group in token_groups(selection)]
    return torch.stack(rows)


def _top_splits(score2: np.ndarray, score3: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(split3, split2)``: the ``k`` best candidates among the ``L3`` (``score3``, propagated) and
    ``L2`` patches; ties: ``L3`` first, then raster order."""
    scores = np.concatenate([score3.ravel(), score2.ravel()])
    level = np.concatenate([np.zeros(score3.size, np.int64), np.ones(score2.size, np.int64)])
    order = np.lexsort((np.arange(scores.size), level, -scores))[:k]
    chosen = np.zeros(scores.size, bool)
    chosen[order] = True
    return chosen[:score3.size].reshape(score3.shape), chosen[score3.size:].reshape(score2.shape)


def _pool_max(m: np.ndarray, f: int) -> np.ndarray:
    h, w = m.shape
    return m.reshape(h // f, f, w // f, f).max(axis=(1, 3))


def _up(m: np.ndarray, f: int) -> np.ndarray:
    return np.repeat(np.repeat(m, f, axis=0), f, axis=1)


LEVEL_COLOURS: dict[str, tuple[int, int, int]] = {"L1": (230, 40, 40), "L2": (250, 190, 0), "L3": (0, 170, 255)}
"""RGB colour of each level's patches in :func:`draw_selection` (fine red, middle amber, coarse blue)."""


def analysis_size(width: int, height: int, patch: int, max_side: int) -> tuple[int, int]:
    """``(w, h)`` an image of ``width x height`` px is resized to before selection: fitted into
    ``max_side`` (never upsampled), then each side rounded to a whole number of ``L3`` patches
    (``4 * patch`` px, at least one)."""
    unit = 4 * patch
    scale = min(1.0, max_side / max(width, height))
    return tuple(max(unit, int(round(side * scale / unit)) * unit) for side in (width, height))  # type: ignore[return-value]


def draw_selection(rgb: np.ndarray, selection: PatchSelection, patch: int, tint: float = 0.25) -> np.ndarray:
    """(H, W, 3) uint8 copy of ``rgb`` (the image the selection was made on) with every kept patch
    tinted and outlined in its level's colour (:data:`LEVEL_COLOURS`)."""
    import cv2

    out = np.asarray(rgb, dtype=np.uint8).copy()
    overlay = out.copy()
    boxes = selection.boxes(patch)
    for level, x0, y0, x1, y1 in boxes:
        cv2.rectangle(overlay, (x0, y0), (x1 - 1, y1 - 1), LEVEL_COLOURS[level], thickness=-1)
    out = cv2.addWeighted(overlay, tint, out, 1.0 - tint, 0.0)
    for level, x0, y0, x1, y1 in boxes:
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), LEVEL_COLOURS[level], thickness=1)
    return out
