"""Vision budgets: how many pixels and vision tokens each action may spend.

``VisionBudgetConfig`` sets the coarse and full global views (long side, max pixels), the patch
size of the fallback token heuristic, and the vision-token pruning proxy (seed 001, B4: keep a
ratio of the tokens by ``stride`` or by ``topk_norm``; the model reads only those,
:mod:`seal.vqa.token_keep`). :class:`VisionBudget` resizes images to a budget and counts vision tokens
*exactly* with the model's own processor when one is given (the number of image-token ids the
processor expands one image's placeholder into: fixed for LLaVA-1.5, tiles + row newlines for
LLaVA-OneVision, the merged patch grid for Qwen2.5-VL); the heuristic is the fallback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

from PIL import Image

from seal.core.errors import ConfigError
from vwm.entropy import EntropyConfig

if TYPE_CHECKING:
    from vwm.layout import VWMConfig

Level = Literal["coarse", "full"]


@dataclass
class VisionBudgetConfig:
    coarse_long_side: int = 336
    """Long side (px) of the global view at the coarse budget."""
    coarse_max_pixels: int = 336 * 336
    full_long_side: int = 1344
    """Long side (px) of the global view at the full budget (a dynamic-resolution model sees more
    tokens; a fixed-resolution model such as LLaVA-1.5 is resized again by its processor)."""
    full_max_pixels: int = 1344 * 1344
    patch_size: int = 14
    """Patch side of the fallback token heuristic ``ceil(w / p) * ceil(h / p)``."""
    pruning_mode: Literal["none", "stride", "topk_norm", "entropy", "merger", "pruners", "merger+pruners"] = "none"
    """How each image's vision tokens are cut (the issue's ``vwm.budget.method``): ``stride`` and
    ``topk_norm`` keep ``pruning_ratio`` of them, every k-th or those with the largest feature norm
    (the pruning proxy); ``merger`` merges them into ``pruning_ratio`` as many with a trained merger
    (seed 002, ``merger_path``); ``pruners`` lets trained heads drop all but ``pruning_ratio`` of them
    inside the LLM from their layer on (seed 002, ``pruners_path``; booked: the mean over the LLM's
    layers of the tokens each reads); ``merger+pruners``: the merger to ``pruning_ratio``, then the
    pruners keep their trained share of those; ``entropy`` merges low-entropy regions into single tokens (seed 003,
    :mod:`vwm.entropy`, settings in ``entropy``). The VQA model reads only the tokens left
    (:mod:`seal.vqa.token_keep`), and the ledger books them."""
    pruning_ratio: float = 1.0
    """Share of each image's vision tokens kept (``0 < ratio <= 1``; ``ceil(N * ratio)``, at least 1)."""
    merger_path: str = "checkpoints/merger_tiny"
    """``pruning_mode: merger``: the trained merger's folder (``seal train merger``)."""
    pruners_path: str = "checkpoints/pruners_tiny"
    """``pruning_mode: pruners``: the trained layer pruners' folder (``seal train pruners``)."""
    entropy: EntropyConfig = field(default_factory=EntropyConfig)
    """``pruning_mode: entropy``: the cascade's mode, alpha, thresholds and bins."""

    def __post_init__(self) -> None:
        for name in ("coarse_long_side", "coarse_max_pixels", "full_long_side", "full_max_pixels", "patch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"vision_budget.{name}: expected >= 1, found {getattr(self, name)}")
        if self.coarse_long_side > self.full_long_side:
            raise ConfigError(
                f"vision_budget.coarse_long_side ({self.coarse_long_side}) must not exceed full_long_side "
                f"({self.full_long_side})"
            )
        if not 0.0 < self.pruning_ratio <= 1.0:
            raise ConfigError(f"vision_budget.pruning_ratio: expected 0 < ratio <= 1, found {self.pruning_ratio}")


class VisionBudget:
    """Resizes images to a budget level and counts the vision tokens they cost."""

    def __init__(self, cfg: VisionBudgetConfig, processor: Any | None = None,
                 tokens_read: Callable[[int], int] | None = None) -> None:
        self.cfg = cfg
        self.processor = processor
        self.tokens_read = tokens_read
        """``pruning_mode: pruners``: the tokens the model reads of an image of ``n`` (mean over its
        layers), from the VQA model (:meth:`seal.vqa.VQAModel.vision_tokens_read`)."""
        self._token_cache: dict[tuple[int, int], int] = {}

    def target_size(self, width: int, height: int, level: Level) -> tuple[int, int]:
        """``(w, h)`` after fitting ``width x height`` into the level's long side and pixel cap.
        Never upsamples."""
        long_side = self.cfg.coarse_long_side if level == "coarse" else self.cfg.full_long_side
        max_pixels = self.cfg.coarse_max_pixels if level == "coarse" else self.cfg.full_max_pixels
        scale = min(1.0, long_side / max(width, height), math.sqrt(max_pixels / (width * height)))
        return max(1, round(width * scale)), max(1, round(height * scale))

    def resize(self, image: Image.Image, level: Level) -> Image.Image:
        size = self.target_size(*image.size, level)
        if size == image.size:
            return image
        return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)

    def heuristic_tokens(self, width: int, height: int) -> int:
        p = self.cfg.patch_size
        return math.ceil(width / p) * math.ceil(height / p)

    def tokens_for(self, image: Image.Image) -> int:
        """Vision tokens the model spends on ``image`` (after pruning), exact when a processor is set
        (``entropy``: the tokens its selection of this image's pixels keeps)."""
        if self.cfg.pruning_mode == "entropy" and self.processor is not None:
            return self._entropy_tokens(image)
        return self.tokens_for_size(*image.size)

    def tokens_for_size(self, width: int, height: int) -> int:
        """Vision tokens of an image of ``width x height`` px (after pruning); every processor's count
        depends on the size only, so it is counted once per size."""
        key = (int(width), int(height))
        if key not in self._token_cache:
            self._token_cache[key] = self._exact_tokens(Image.new("RGB", key)) if self.processor is not None \
                else self.heuristic_tokens(*key)
        return self.kept_tokens(self._token_cache[key])

    def kept_tokens(self, n_tokens: int) -> int:
        """Tokens left after the pruning proxy keeps ``pruning_ratio`` of ``n_tokens`` (``entropy`` keeps
        a number that depends on the pixels: see :meth:`tokens_for`)."""
        if self.cfg.pruning_mode in ("none", "entropy"):
            return n_tokens
        kept = n_tokens if self.cfg.pruning_mode == "pruners" else max(1, math.ceil(n_tokens * self.cfg.pruning_ratio))
        if "pruners" in self.cfg.pruning_mode:
            if self.tokens_read is None:
                raise ConfigError("vision_budget.pruning_mode: pruners: the budget needs the VQA model's count")
            return self.tokens_read(kept)
        return kept

    def _entropy_tokens(self, image: Image.Image) -> int:
        """Tokens the ``entropy`` selection keeps of ``image`` as the processor presents it (the same
        pixels :mod:`seal.vqa.token_keep` selects from): the processor's pixels read back as grey
        levels, one smallest patch per tower token (a Qwen2.5-VL style processor, which returns an
        ``image_grid_thw``: per merged token, :func:`vwm.entropy.select_merged_grid`)."""
        from vwm.entropy import select_merged_grid, select_token_grid

        ip = self.processor.image_processor
        out = ip(images=[image.convert("RGB")], return_tensors="np")
        if out.get("image_grid_thw") is not None:  # (1, 3); pixel_values (t * h * w, 3 * T * p * p)
            return select_merged_grid(out["pixel_values"], out["image_grid_thw"][0], self.cfg.entropy, ip.image_mean,
                                      ip.image_std, int(ip.patch_size), int(ip.merge_size),
                                      int(ip.temporal_patch_size)).stats.kept_tokens
        pixels = out["pixel_values"][0]  # (3, S, S)
        n = self.tokens_for_size(*image.size)
        return select_token_grid(pixels, n, self.cfg.entropy, ip.image_mean, ip.image_std).stats.kept_tokens

    def _exact_tokens(self, image: Image.Image) -> int:
        """Count the image tokens the processor expands one image placeholder (``<image>``,
        ``<|image_pad|>``, ...) into."""
        proc = self.processor
        image_token = getattr(proc, "image_token", "<image>")
        out = proc(images=[image], text=[image_token], return_tensors="np")
        token_id = getattr(proc, "image_token_id", None)
        if not isinstance(token_id, int):
            token_id = proc.tokenizer.convert_tokens_to_ids(image_token)
        return int((out["input_ids"] == token_id).sum())


def prune_token_indices(norms, ratio: float, mode: Literal["stride", "topk_norm"]):
    """Indices of the vision tokens the pruning proxy keeps, in their original order.

    Args:
        norms: ``(N,)`` per-token feature norms (used by ``topk_norm``; only the length matters for
            ``stride``). numpy array or torch tensor.
        ratio: fraction kept, ``0 < ratio <= 1``.
        mode: ``stride`` keeps evenly spaced tokens, ``topk_norm`` the largest-norm tokens.
    Returns: ``(K,)`` int64 numpy array, ``K = ceil(N * ratio)``.
    """
    import numpy as np

    n = len(norms)
    k = max(1, math.ceil(n * ratio))
    if mode == "stride":
        return np.unique(np.floor(np.arange(k) * (n / k)).astype(np.int64))
    arr = np.asarray(norms.detach().cpu() if hasattr(norms, "detach") else norms, dtype=np.float64)
    return np.sort(np.argsort(-arr, kind="stable")[:k]).astype(np.int64)


def resolve_view_square(cfg: "VWMConfig", processor: Any) -> "VWMConfig":
    """``cfg`` with ``view_square: auto`` decided for a model's ``processor``: ``own`` when it counts
    more vision tokens for a 448 px square than for a 224 px one (a dynamic-resolution processor), else
    ``fixed``; ``cfg`` itself when already decided or without a processor."""
    from dataclasses import replace

    if cfg.view_square != "auto" or processor is None:
        return cfg
    budget = VisionBudget(VisionBudgetConfig(), processor)
    dynamic = budget.tokens_for_size(448, 448) > budget.tokens_for_size(224, 224)
    return replace(cfg, view_square="own" if dynamic else "fixed")
