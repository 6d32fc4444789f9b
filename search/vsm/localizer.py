"""The ``vsm`` localizer: a trained VSM checkpoint behind the :class:`search.localizer.Localizer` protocol.

The CLI keeps a registry of localizer factories; the VSM's is :func:`load_vsm_localizer`.
Importing this module does not import torch (the model loads on first call).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from search.localizer import Localizer
    from search.vsm.config import VSMPredictorConfig

NAME = "vsm"
"""Registry name of this localizer (``--localizer vsm``)."""
CROP_CHECK_DIR = "crop_check"
"""Sub-folder of a VSM checkpoint holding its crop matcher (:mod:`search.vsm.crop_matcher`), if any."""


def load_vsm_localizer(path: str | Path, device: str = "cpu", dtype: "torch.dtype | None" = None,
                       cfg: "VSMPredictorConfig | None" = None) -> "Localizer":
    """Load a VSM checkpoint directory (from ``VSMModel.save_pretrained``) as a localizer.

    Args:
        path: the checkpoint directory (local files only; loaded strictly).
        device: torch device of the model.
        dtype: parameter dtype of the backbone (default float32); decoders run in float32.
        cfg: predictor knobs (batch size, feature cache).

    Returns:
        A :class:`search.vsm.predictor.VSMPredictor` (``name == "vsm"``), with the checkpoint's crop
        matcher (``crop_check/``) attached when it has one.

    Raises:
        InputError: the directory is missing or not a valid VSM checkpoint.
    """
    from search.vsm.crop_matcher import CONFIG, CropMatcher
    from search.vsm.model import VSMModel
    from search.vsm.predictor import VSMPredictor

    second = Path(path) / CROP_CHECK_DIR
    matcher = CropMatcher.from_pretrained(second) if (second / CONFIG).is_file() else None
    return VSMPredictor(VSMModel.from_pretrained(path, device=device, dtype=dtype), cfg, crop_matcher=matcher)
