"""Configs of the search model's (VSM's) training: the ``vsm_train`` section and ``seal train vsm``'s config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from eval.synth.config import SynthConfig
from search.config import SearchConfig
from search.vsm.config import VSMConfig, VSMLossConfig
from seal.core.errors import ConfigError
from seal.models.backbone import TinyBackboneConfig
from training.config import TrainConfig, check_base_dtype
from training.crop_matcher_config import CropMatcherTrainConfig
from training.data.config import DetectionDataConfig
from training.stem_pretrain import StemPretrainConfig
from training.vsm_data import VSMDataConfig


def _vsm_backbone() -> TinyBackboneConfig:
    """256 px input in 16 px patches: 256 image tokens, and a level-2 search patch of a 2400 px
    SynthVStar image shows its small targets at ~12-22 px (legible) instead of ~6-11 px at 128 px."""
    return TinyBackboneConfig(text_hidden=128, text_layers=2, text_heads=4, text_intermediate=256,
                              max_positions=512, image_size=256, patch_size=16, vision_hidden=128,
                              vision_layers=3, vision_heads=4, vision_intermediate=256)


def _vsm_heads() -> VSMConfig:
    return VSMConfig(heatmap_mlp_dim=256, box_mlp_dim=256, modules_to_save=("vision_tower", "multi_modal_projector"),
                     detector_stem=True, box_decoder="patches", lora_r=16, lora_alpha=32,
                     lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))


@dataclass
class VSMTrainConfig:
    """The ``vsm_train`` section: what the VSM recipe builds, its stages and where it exports the model."""

    backbone: TinyBackboneConfig = field(default_factory=_vsm_backbone)
    """Sizes of the tiny LLaVA (random init from the command's ``seed``; its ``seed`` field is set from it)."""
    vocab_size: int = 768
    """Upper bound of the tokenizer vocabulary (same corpus as the VQA tokenizer)."""
    corpus_spatial_pairs: int = 400
    corpus_layouts: int = 200
    """Size of the tokenizer corpus (:func:`training.tokenizer_corpus.corpus_texts`; smaller = faster, for tests)."""
    vsm: VSMConfig = field(default_factory=_vsm_heads)
    """Heads and adapter (their ``seed`` is set from the command's). ``modules_to_save`` trains the
    (random) vision tower and projector in full: a frozen random tower cannot learn colours, shapes
    and patterns."""
    loss: VSMLossConfig = field(default_factory=VSMLossConfig)
    data: VSMDataConfig = field(default_factory=VSMDataConfig)
    export_dir: str = "checkpoints/vsm_tiny"
    """Where the final model, its manifest and training log are written."""
    base: str = ""
    """A real VLM checkpoint (``--base``: a ``save_pretrained`` directory of a family
    :mod:`search.vsm.families` supports) to build the search model on: its tokenizer and chat
    template are kept (``<LOC>`` added), ``vsm`` gives the adapter (``lora_r``,
    ``lora_alpha``, ``lora_dropout``, ``lora_targets``, ``modules_to_save``) and the heads;
    '' = a new tokenizer and the tiny random LLaVA (``backbone``)."""
    base_dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Dtype the base's weights are loaded in (a 7B base in bf16 takes half the memory of fp32); a
    half-precision base trains under the same ``train.mixed_precision`` (adapter and heads stay fp32)."""
    init_from: str = ""
    """An exported VSM checkpoint to start from ('' = random init): its weights are copied into the
    model this config builds; every one must fit, and only modules this config adds (e.g.
    ``vsm.phrase_query``'s projection) may be missing from it (they start fresh and are logged)."""
    stem_pretrain: StemPretrainConfig | None = None
    """First stage: the detector stem trained alone on the attribute maps before the main loop
    (:mod:`training.stem_pretrain`); null = none."""
    crop_matcher: bool = False
    """Last stage: train the search model's crop matcher (:mod:`training.crop_matcher_recipe`, the
    ``crop_matcher_train`` section) into ``export_dir/crop_matcher``, so one command yields the
    whole search model."""
    search_defaults: dict[str, Any] = field(default_factory=dict)
    """``search`` fields written into the export's manifest as its search defaults (the stop thresholds
    its scores were tuned for, chosen on the validation split), layered under every user config when
    it searches; under the key ``hit_check``, ``hit_check`` fields likewise; {} = none (the defaults
    apply)."""

    def __post_init__(self) -> None:
        if self.vocab_size < 300:
            raise ConfigError(f"vsm_train.vocab_size: expected >= 300, found {self.vocab_size}")
        if not self.export_dir:
            raise ConfigError("vsm_train.export_dir: expected a directory, found an empty string")
        if self.data.attribute_maps and not self.vsm.attribute_classes:
            from training.vsm_data import attribute_classes

            self.vsm.attribute_classes = attribute_classes()  # the head the maps supervise
        if self.stem_pretrain is not None and not (self.data.attribute_maps and self.vsm.detector_stem):
            raise ConfigError("vsm_train.stem_pretrain needs vsm.detector_stem and vsm_train.data.attribute_maps: "
                              "true (the stem learns the attribute maps); set it to null to skip the stage")
        if self.search_defaults:
            from seal.core.config import from_dict

            # checked now, not at export
            from_dict(SearchConfig, {k: v for k, v in self.search_defaults.items() if k != "hit_check"},
                      prefix="vsm_train.search_defaults.")
            if "hit_check" in self.search_defaults:
                from search.hit_check.config import HitCheckConfig

                from_dict(HitCheckConfig, self.search_defaults["hit_check"],
                          prefix="vsm_train.search_defaults.hit_check.")
        if self.vsm.attribute_classes and not self.data.attribute_maps:
            raise ConfigError("vsm.attribute_classes is set but vsm_train.data.attribute_maps is off: the "
                              "attribute head would have no targets")


@dataclass
class TrainVSMConfig:
    """``seal train vsm``: the scenes, the search tree they are cut by, the main loop, the model and
    its stages (detector stem first, crop matcher last)."""

    OUT_DIR: ClassVar[str] = "train.out_dir"
    """The field naming the run's folder (its resolved config and run record go there)."""

    seed: int = 0
    """The run's seed: the tokenizer corpus, the model's initialisation, each scene's patch and row
    choices, the batch order; the stages' too."""
    synth: SynthConfig = field(default_factory=SynthConfig)
    """The scenes (``synth.seed`` picks them; never the ``test`` split)."""
    search: SearchConfig = field(default_factory=SearchConfig)
    """The search tree whose patches are the training patches (:data:`search.tree.TREE_FIELDS`)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The search model's loop."""
    vsm_train: VSMTrainConfig = field(default_factory=VSMTrainConfig)
    crop_matcher_train: CropMatcherTrainConfig = field(default_factory=CropMatcherTrainConfig)
    """The crop-matcher stage (``vsm_train.crop_matcher``); its ``export_dir`` stays '' (the matcher
    goes into the search model's export)."""
    data: DetectionDataConfig = field(default_factory=DetectionDataConfig)
    """The user's own annotations (``--data``, ``--image-root``); empty ``path`` = the ``synth`` scenes."""

    def __post_init__(self) -> None:
        vt = self.vsm_train
        if self.data.path and (vt.data.attribute_maps or vt.crop_matcher):
            raise ConfigError("vsm_train.data.attribute_maps / vsm_train.crop_matcher: both learn SynthVStar's "
                              "colours, patterns and shapes; turn them off with data.path (see "
                              "configs/train/vsm/lora.yaml)")
        if vt.base and vt.init_from:
            raise ConfigError("vsm_train.init_from: a fine-tune starts from vsm_train.base; give one of the two")
        check_base_dtype("vsm_train", vt.base_dtype, self.train.mixed_precision)
        for name, seed in (("vsm_train.backbone.seed", self.vsm_train.backbone.seed),
                           ("vsm_train.vsm.seed", self.vsm_train.vsm.seed)):
            if seed not in (0, self.seed):
                raise ConfigError(f"{name}: the command's seed seeds the model; set seed: {seed} instead of {name}")
        self.vsm_train.backbone.seed = self.vsm_train.vsm.seed = self.seed
        if self.crop_matcher_train.export_dir:
            raise ConfigError("crop_matcher_train.export_dir: seal train vsm writes its crop matcher into "
                              "vsm_train.export_dir/crop_matcher; leave it empty")
        loops = {"train.out_dir": self.train.out_dir}
        if self.vsm_train.stem_pretrain is not None:
            loops["vsm_train.stem_pretrain.train.out_dir"] = self.vsm_train.stem_pretrain.train.out_dir
        if self.vsm_train.crop_matcher:
            loops["crop_matcher_train.train.out_dir"] = self.crop_matcher_train.train.out_dir
        if len(set(loops.values())) < len(loops):
            raise ConfigError(f"the stages' loops need their own folders (checkpoints would mix), found {loops}")
