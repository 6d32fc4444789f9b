"""Configs of the VQA LLM's training: the ``vqa_train`` section and ``seal train vqa``'s config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from eval.synth.config import SynthConfig
from seal.core.errors import ConfigError
from seal.models.backbone import TinyBackboneConfig
from training.config import TrainConfig, check_base_dtype
from training.data.config import VQAUserDataConfig
from training.lora import LoRAConfig
from training.vqa_data import VQADataConfig
from vwm.layout import VWMConfig


@dataclass
class VQATrainConfig:
    """The ``vqa_train`` section: what the VQA recipe builds and where it exports the trained model."""

    backbone: TinyBackboneConfig = field(default_factory=TinyBackboneConfig)
    """Sizes of the tiny LLaVA (random init from the command's ``seed``; its ``seed`` field is set from it)."""
    vocab_size: int = 768
    """Upper bound of the tokenizer vocabulary (the corpus saturates near 570 tokens)."""
    data: VQADataConfig = field(default_factory=VQADataConfig)
    """How scenes become examples."""
    export_dir: str = "checkpoints/vqa_tiny"
    """Where the final model, processor, manifest and training log are written."""
    base: str = ""
    """A real checkpoint to fine-tune (``--base``: a ``save_pretrained`` directory of a family
    :func:`seal.models.vlm.load_vlm` loads: llava, llava_onevision, qwen2_5_vl), its
    tokenizer and processor kept, trained as the ``lora`` section says and exported as an adapter
    (or, with ``lora.full_finetune``, a whole model); '' = build the tiny random model."""
    base_dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Dtype the base's weights are loaded in (a 7B base in bf16 takes half the memory of fp32); a
    half-precision base trains under the same ``train.mixed_precision`` (the adapter stays fp32)."""
    init_from: str = ""
    """An exported VQA model (``export_dir`` of an earlier run) to start from instead of random
    weights ('' = random init); its tokenizer and sizes must be the ones this config builds."""
    attribute_loss: float = 0.5
    """Weight of the auxiliary per-patch attribute loss on the vision tower
    (:mod:`training.vqa_aux`; needs ``data.attribute_maps``); 0 = answers only."""
    attribute_balanced: bool = False
    """Weigh the object and background cells of that loss equally
    (:func:`search.vsm.losses.attribute_cross_entropy`); the shipped model used plain cross-entropy."""
    hit_check_kinds: list[str] | None = None
    """A recipe that trains the VQA LLM to check the search's hits names the attribute kinds it
    taught: the export's manifest then records how it must be asked (``config.hit_check``: these
    kinds, ``hit_check_noun_kinds`` and the ``vwm`` section's crop, ``crop_scale`` /
    ``min_context_px``, the crops it trained on); None = an answering model, asked with the defaults."""
    hit_check_noun_kinds: list[str] = field(default_factory=list)
    """The recorded ``noun_kinds`` (the kinds asked about "the dotted object")."""

    def __post_init__(self) -> None:
        if self.vocab_size < 300:
            raise ConfigError(f"vqa_train.vocab_size: expected >= 300, found {self.vocab_size}")
        if not self.export_dir:
            raise ConfigError("vqa_train.export_dir: expected a directory, found an empty string")
        if self.hit_check_kinds is not None or self.hit_check_noun_kinds:
            from search.hit_check.config import HitCheckConfig

            # unknown kinds raise
            HitCheckConfig(kinds=self.hit_check_kinds, noun_kinds=list(self.hit_check_noun_kinds))
            if self.hit_check_kinds is None:
                raise ConfigError("vqa_train.hit_check_noun_kinds: needs vqa_train.hit_check_kinds")
        if self.attribute_loss < 0 or (self.attribute_loss > 0 and not self.data.attribute_maps):
            raise ConfigError(f"vqa_train.attribute_loss: expected >= 0, and data.attribute_maps on when > 0; "
                              f"found {self.attribute_loss} / {self.data.attribute_maps}")


@dataclass
class TrainVQAConfig:
    """``seal train vqa``: the scenes, the answer layout of the examples, the loop and the model."""

    OUT_DIR: ClassVar[str] = "train.out_dir"
    """The field naming the run's folder (its resolved config and run record go there)."""

    seed: int = 0
    """The run's seed: the tokenizer corpus, the model's initialisation, each scene's example choices,
    the batch order."""
    synth: SynthConfig = field(default_factory=SynthConfig)
    """The scenes (``synth.seed`` picks them: a later stage trains on new scenes; never ``test``)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    vwm: VWMConfig = field(default_factory=VWMConfig)
    """The visual working memory layout the examples are rendered in (the answering layout)."""
    vqa_train: VQATrainConfig = field(default_factory=VQATrainConfig)
    data: VQAUserDataConfig = field(default_factory=VQAUserDataConfig)
    """The user's own data (``--data``, ``--image-root``); empty ``path`` = the ``synth`` scenes."""
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    """How ``vqa_train.base`` is fine-tuned (unused without a base)."""

    def __post_init__(self) -> None:
        vt = self.vqa_train
        if (vt.base or self.data.path) and vt.attribute_loss > 0:
            raise ConfigError(f"vqa_train.attribute_loss: the attribute maps exist only for the tiny model on "
                              f"SynthVStar scenes; set it to 0 with vqa_train.base or data.path "
                              f"(found {vt.attribute_loss})")
        if vt.base and vt.init_from:
            raise ConfigError("vqa_train.init_from: a fine-tune starts from vqa_train.base; give one of the two")
        check_base_dtype("vqa_train", vt.base_dtype, self.train.mixed_precision)
        seed = self.vqa_train.backbone.seed
        if seed not in (0, self.seed):
            raise ConfigError(f"vqa_train.backbone.seed: the command's seed seeds the model; set seed: {seed} instead")
        self.vqa_train.backbone.seed = self.seed
