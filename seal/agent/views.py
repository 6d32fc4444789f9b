"""``ImageViews``: one image, its global views at the vision budgets, and what they cost.

The agent calls :meth:`ImageViews.view` for the COARSE / FULL global view; each view is resized
once (:meth:`vwm.budget.VisionBudget.resize`, never upsampled) and cached, with its vision-token
count (exact with the VQA model's processor). The count is of the image as the VQA prompt holds it:
the prompt letterboxes a global view to a square (``vwm.view_side_px``, or the view's own long side
for a dynamic-resolution model: :meth:`vwm.layout.VWMConfig.view_side`) before the processor sees it,
so a view is counted at that size (for a dynamic-resolution processor the size decides the count).
Several questions about one image reuse both.

Frames: the original image is the *full-image* pixel frame of the search and of every box in
results; a view is the same picture scaled by one factor per axis, so normalised coordinates are
the same in both. :meth:`to_view_xyxy` maps full-image boxes into a view.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from PIL import Image

from seal.core.geometry import Frame
from seal.core.image_source import ImageSource
from vwm.budget import Level, VisionBudget, VisionBudgetConfig
from vwm.layout import VWMConfig


class ImageViews:
    """Cached budget views of one upright RGB image.

    Args:
        image: the full-resolution upright RGB image (the search's frame).
        budget_cfg: the ``vision_budget`` config section.
        processor: the VQA model's processor, for exact token counts (None: patch heuristic).
        path: where the image came from (for traces), or None.
        vwm_config: the VQA prompt's layout (its :meth:`~vwm.layout.VWMConfig.view_side` is the square
            a view is letterboxed to and counted at); None: the view's own size, unpadded.
        tokens_read: ``vision_budget.pruning_mode: pruners``: the VQA model's count of the tokens it
            reads of an image of ``n`` (:meth:`seal.vqa.VQAModel.vision_tokens_read`).
    """

    def __init__(self, image: Image.Image, budget_cfg: VisionBudgetConfig, processor: Any | None = None,
                 path: str | None = None, vwm_config: VWMConfig | None = None,
                 tokens_read: Callable[[int], int] | None = None) -> None:
        self.source = ImageSource(image, path)
        self.budget = VisionBudget(budget_cfg, processor, tokens_read)
        self.vwm_config = vwm_config
        self._views: dict[str, Image.Image] = {}
        self._tokens: dict[str, int] = {}

    @property
    def image(self) -> Image.Image:
        """The full-resolution image."""
        return self.source.image

    @property
    def path(self) -> str | None:
        return self.source.path

    def view(self, level: Level) -> Image.Image:
        """The global view at ``level`` (``"coarse"`` or ``"full"``), resized once and cached."""
        if level not in self._views:
            self._views[level] = self.budget.resize(self.image, level)
        return self._views[level]

    def tokens(self, level: Level) -> int:
        """Vision tokens the VQA LLM spends on the ``level`` view (after the token cut), counted on the
        image its prompt holds (letterboxed to the layout's square when set: a cut such as ``entropy``
        counts its pixels, the others its size); counted once per level."""
        if level not in self._tokens:
            shown = self.view(level)
            if self.vwm_config is not None:
                from seal.core.crops import letterbox

                shown, _ = letterbox(shown, self.vwm_config.view_side(*shown.size))
            self._tokens[level] = self.budget.tokens_for(shown)
        return self._tokens[level]

    def image_tokens(self, image: Image.Image) -> int:
        """Vision tokens of any other image fed to the VQA LLM (a VWM crop)."""
        return self.budget.tokens_for(image)

    def to_view_xyxy(self, box_xyxy: Sequence[float], level: Level) -> tuple[float, float, float, float]:
        """A full-image pixel ``xyxy`` box in the pixel frame of the ``level`` view."""
        w, h = self.view(level).size
        frame = Frame(self.source.full_box(), w, h, letterbox=False)
        return tuple(float(v) for v in frame.full_to_input_xyxy(box_xyxy))  # type: ignore[return-value]

    def to_full_xyxy(self, box_xyxy: Sequence[float], level: Level) -> tuple[float, float, float, float]:
        """A box in the pixel frame of the ``level`` view back in full-image pixels."""
        w, h = self.view(level).size
        frame = Frame(self.source.full_box(), w, h, letterbox=False)
        return tuple(float(v) for v in frame.input_to_full_xyxy(box_xyxy))  # type: ignore[return-value]
