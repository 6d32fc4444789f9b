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


def load_vsm_localizer(path: str | Path, device: str = "cpu", dtype: "torch.dtype | None" = None,
                       cfg: "VSMPredictorConfig | None" = None) -> "Localizer":
    """Load a VSM checkpoint directory (from ``VSMModel.save_pretrained``) as a localizer.

    Args:
        path: the checkpoint directory (local files only; loaded strictly).
        device: torch device of the model.
        dtype: parameter dtype of the backbone (default float32); decoders run in float32.
        cfg: predictor knobs (batch size, feature cache).

    Returns:
        A :class:`search.vsm.predictor.VSMPredictor` (``name == "vsm"``).

    Raises:
        InputError: the directory is missing or not a valid VSM checkpoint.
    """
    from search.vsm.model import VSMModel
    from search.vsm.predictor import VSMPredictor

    return VSMPredictor(VSMModel.from_pretrained(path, device=device, dtype=dtype), cfg)
