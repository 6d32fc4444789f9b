"""Configs of the crop matcher's training: its stage section and ``seal train crop-matcher``'s config.

The crop matcher (:mod:`search.vsm.crop_matcher`) is the search model's second stage. It is trained
by ``seal train crop-matcher`` on its own, or as the last stage of ``seal train vsm``
(``vsm_train.crop_matcher``); both read the same ``crop_matcher_train`` section, which carries the
matcher's own loop settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from eval.synth.config import SynthConfig
from search.vsm.config import CropMatcherConfig
from training.config import TrainConfig
from training.crop_matcher_data import CropMatcherDataConfig


def synth_kinds() -> dict[str, list[str]]:
    """SynthVStar's attribute kind -> words (the default vocabulary, and the report's grouping)."""
    from eval.synth.scene import VALUES

    return {k: list(v) for k, v in VALUES.items()}


@dataclass
class CropMatcherTrainConfig:
    """The ``crop_matcher_train`` section: what the crop-matcher stage builds, from which crops, how long."""

    matcher: CropMatcherConfig = field(default_factory=CropMatcherConfig)
    """Architecture and crop; an empty ``vocabulary`` takes SynthVStar's colour, pattern and shape words."""
    data: CropMatcherDataConfig = field(default_factory=CropMatcherDataConfig)
    hflip: bool = True
    """Mirror half of each batch left-right (no SynthVStar word changes under a mirror)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The matcher's own loop (a stage of ``seal train vsm`` runs it after the search model's)."""
    export_dir: str = ""
    """Where ``seal train crop-matcher`` writes the matcher; '' inside ``seal train vsm``, whose matcher
    goes into the search model's export (its ``crop_matcher/`` folder, the manifest's second stage)."""

    def __post_init__(self) -> None:
        if not self.matcher.vocabulary:
            self.matcher.vocabulary = [w for words in synth_kinds().values() for w in words]


@dataclass
class TrainCropMatcherConfig:
    """``seal train crop-matcher``: the scenes and the crop-matcher stage."""

    OUT_DIR: ClassVar[str] = "crop_matcher_train.train.out_dir"
    """The field naming the run's folder (its resolved config and run record go there)."""

    seed: int = 0
    """The run's seed: the matcher's initialisation, each scene's crop jitter, the batch order."""
    synth: SynthConfig = field(default_factory=SynthConfig)
    """The scenes the crops are cut from (``synth.seed`` picks the scenes; never the ``test`` split)."""
    crop_matcher_train: CropMatcherTrainConfig = field(default_factory=CropMatcherTrainConfig)
    """The matcher, its crops, its loop and ``export_dir`` (required here)."""
