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
CROP_MATCHER_DIR = "crop_matcher"
"""Sub-folder where a VSM recipe exports its second stage, the crop matcher
(:mod:`search.vsm.crop_matcher`); the manifest's ``second_stage`` names it."""


def load_vsm_localizer(path: str | Path, device: str = "cpu", dtype: "torch.dtype | None" = None,
                       cfg: "VSMPredictorConfig | None" = None) -> "Localizer":
    """Load a VSM checkpoint directory (from ``VSMModel.save_pretrained``) as a localizer.

    Args:
        path: the checkpoint directory (local files only; loaded strictly).
        device: torch device of the model.
        dtype: parameter dtype of the backbone (default float32); decoders run in float32.
        cfg: predictor knobs (batch size, feature cache) and the token cut (``search.token_cut``).

    Returns:
        A :class:`search.vsm.predictor.VSMPredictor` (``name == "vsm"``), with the crop matcher its
        manifest names as its second stage attached (None when the manifest names none); for a
        converted SEAL VSM (manifest ``config.backend: seal_vsm``) its own localizer.

    Raises:
        InputError: the directory is missing, is a plain base VLM (the message names the command that
            trains a search model on it), has no ``manifest.json`` of kind ``vsm``, or a file the
            manifest lists (its second stage's included) is missing or damaged.
        ConfigError: a token cut the model cannot take (:func:`search.vsm.token_cut.check_cut`; any cut for
            a converted SEAL VSM).
    """
    from seal.core.manifest import read_manifest
    from search.vsm.crop_matcher import CropMatcher
    from search.vsm.model import VSMModel
    from search.vsm.predictor import VSMPredictor

    from seal.core.errors import InputError
    from search.vsm.plain_base import plain_base_message

    message = plain_base_message(path)
    if message:
        raise InputError(message, path)
    manifest = read_manifest(path, "vsm")
    from search.seal_vsm.model import BACKEND as SEAL_VSM

    if manifest.config.get("backend") == SEAL_VSM:  # a converted SEAL VSM (seal convert seal-vsm)
        from search.seal_vsm.localizer import load_seal_vsm_localizer

        if cfg is not None and cfg.token_cut.active:
            from seal.core.errors import ConfigError

            raise ConfigError(f"search.token_cut.mode: {cfg.token_cut.mode} cuts a trained VSM's image tokens; a "
                              "converted SEAL VSM has no cut (set mode: none)")
        return load_seal_vsm_localizer(path, device=device, dtype=dtype)
    stage = manifest.second_stage
    matcher = None if stage is None else CropMatcher.from_pretrained(Path(path) / stage["path"])
    return VSMPredictor(VSMModel.from_pretrained(path, device=device, dtype=dtype), cfg, crop_matcher=matcher)
