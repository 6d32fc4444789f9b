"""Typed configuration of the V* search model (VSM): architecture, losses, predictor.

- :class:`VSMConfig`: the heads and the LoRA adapter. Saved as ``vsm_config.json`` beside the
  weights, so a checkpoint rebuilds exactly the modules its weights were trained in.
- :class:`VSMLossConfig`: loss weights (a dict, one entry per named term of
  :class:`search.vsm.losses.VSMCriterion`), Hungarian matching costs and the focal/Dice constants.
- :class:`VSMPredictorConfig`: inference-time knobs (batch size, feature cache) and the
  :class:`TokenCutConfig` (``search.token_cut``: which image tokens the LM reads per patch).

No torch here: this module is imported by the CLI and the config layer.
"""

from __future__ import annotations

import re

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from seal.core.errors import ConfigError

LOSS_TERMS: tuple[str, ...] = (
    "lm", "heatmap_bce", "heatmap_dice", "heatmap_iou", "box_focal", "box_l1", "box_giou", "box_presence",
    "attributes",
)
"""Names of the loss terms, each one method ``loss_<name>`` of ``VSMCriterion``."""


@dataclass
class VSMConfig:
    """Architecture of the VSM heads and adapter (everything not in the LLaVA backbone's config)."""

    decoder_dim: int = 128
    """Channel width D of both decoders (image features are projected from the vision width to D)."""
    heatmap_depth: int = 2
    """Layers of the heatmap decoder's ``TwoWayTransformer`` (SAM / reference: 2)."""
    heatmap_heads: int = 4
    """Attention heads of the ``TwoWayTransformer``; ``decoder_dim / 2`` must be divisible by it
    (its cross-attention runs at half width)."""
    heatmap_mlp_dim: int = 512
    """MLP width inside the ``TwoWayTransformer`` (reference: 2048 at D = 256)."""
    quality_head_hidden: int = 128
    """Hidden width of the mask decoder's IoU / quality MLP."""
    prompt_tokens: int = 1
    """Sparse prompt tokens the ``<LOC>`` state is projected into for the heatmap decoder."""

    box_decoder: Literal["queries", "patches"] = "patches"
    """``patches`` (the shipped model's): one box per grid cell scored against ``<LOC>`` (OWL-ViT
    style, :mod:`search.vsm.box_patches`; converges much faster from scratch); ``queries``: DETR
    learned queries cross-attending the features (:mod:`search.vsm.box_decoder`)."""
    box_queries: int = 8
    """Learned queries of the box decoder = candidate boxes per patch."""
    box_layers: int = 2
    """``nn.TransformerDecoder`` layers of the box decoder."""
    box_heads: int = 4
    """Attention heads of the box decoder (must divide ``decoder_dim``)."""
    box_mlp_dim: int = 512
    """Feed-forward width of the box decoder layers."""

    loc_mlp_hidden: int = 0
    """Hidden width of the MLPs that project the ``<LOC>`` state into each decoder; 0 = the
    language model's hidden size (reference: 4096 -> 4096 -> out)."""
    loc_state: Literal["at", "before"] = "at"
    """Which last-layer hidden state stands for ``<LOC>``: the position holding ``<LOC>`` ("at")
    or the one predicting it ("before", LISA / the reference). Both are causal-prefix states, so
    training (full reply) and inference (prompt cut after ``<LOC>``) see the same value."""
    input_size: int = 0
    """Side S (px) of the square patch the model reads; 0 = the family's default (LLaVA and
    LLaVA-OneVision: the vision tower's ``image_size``, the only side they take; Qwen2.5-VL: 16
    merged tokens a side, e.g. 448 px, kept inside its processor's pixel range). Qwen2.5-VL takes
    any multiple of ``patch_size * spatial_merge_size`` in that range (:mod:`search.vsm.families`)."""
    letterbox: bool = True
    """Patches are resampled to the square model input keeping their aspect (padded with the
    processor's mean colour); False stretches them."""

    lora_r: int = 8
    """LoRA rank on the language model (reference: 8)."""
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    """Language-model linear layers that get LoRA (the vision tower never does)."""
    train_loc_token: bool = True
    """Train the ``<LOC>`` rows of the input embedding and of the LM head (peft trainable tokens)."""
    modules_to_save: tuple[str, ...] = ()
    """Backbone modules trained in full and saved in the adapter (e.g. ``multi_modal_projector``)."""

    phrase_query: bool = False
    """Add to the ``<LOC>`` state a projection of the mean input embedding of the prompt's text
    before ``<LOC>`` (which holds the target phrase). On a tiny random LM the ``<LOC>`` state
    attends almost uniformly over ~256 image tokens, so it carries little of the target's name
    early in training and the decoders collapse to target-agnostic answers; this text path gives
    them the name from the first step (trained with the decoders, saved beside them)."""
    phrase_embed_dim: int = 0
    """With ``phrase_query``: 0 = the phrase is the mean of the LM's (frozen) input embeddings;
    > 0 = a bag-of-words sum over a trainable embedding table of this width (trained with the
    decoders: it can weigh the attribute words up and the constant template words down)."""
    attribute_classes: tuple[int, ...] = ()
    """Classes per channel of an auxiliary per-cell attribute head on the decoders' image features
    (SynthVStar: colour, pattern, shape incl. background, ``training.vsm_data.attribute_classes``);
    () = none. A dense loss that teaches the stem what objects look like far faster than the sparse
    box loss; the head plays no part at inference."""
    detector_stem: bool = False
    """Add a convolutional stem's features (:class:`search.vsm.stem.ConvStem`, trained with the
    decoders) to the vision tower's patch grid before both decoders (its stride is the vision patch)."""
    stem_widths: tuple[int, ...] = (24, 48, 96, 128)
    """Channels of the stem's four stride-2 stages."""

    word_match: bool = False
    """Add the conjunctive word scorer's logit (:class:`search.vsm.word_match.WordMatch`: every word
    of the target phrase must describe the cell's object) to the box decoder's cell logits; needs
    ``box_decoder: patches`` (one candidate per cell)."""
    word_match_dim: int = 64
    """Width of the word scorer's cell and word embeddings."""

    seed: int = 0
    """Seed of the decoders' random initialisation."""

    def __post_init__(self) -> None:
        self.lora_targets = tuple(self.lora_targets)
        self.stem_widths = tuple(int(w) for w in self.stem_widths)
        self.attribute_classes = tuple(int(c) for c in self.attribute_classes)
        if any(c < 2 for c in self.attribute_classes) or self.phrase_embed_dim < 0:
            raise ConfigError(f"vsm.attribute_classes / phrase_embed_dim: expected classes >= 2 and a width >= 0, "
                              f"found {list(self.attribute_classes)} / {self.phrase_embed_dim}")
        if self.box_decoder not in ("queries", "patches"):
            raise ConfigError(f"vsm.box_decoder: expected 'queries' or 'patches', found {self.box_decoder!r}")
        if self.word_match and self.box_decoder != "patches":
            raise ConfigError("vsm.word_match scores grid cells: it needs vsm.box_decoder 'patches'")
        if self.word_match_dim < 1:
            raise ConfigError(f"vsm.word_match_dim: expected >= 1, found {self.word_match_dim}")
        self.modules_to_save = tuple(self.modules_to_save)
        for name in ("decoder_dim", "heatmap_depth", "heatmap_heads", "heatmap_mlp_dim", "quality_head_hidden",
                     "prompt_tokens", "box_queries", "box_layers", "box_heads", "box_mlp_dim", "lora_r"):
            if getattr(self, name) < 1:
                raise ConfigError(f"vsm.{name}: expected >= 1, found {getattr(self, name)}")
        if self.decoder_dim % 8:
            raise ConfigError(f"vsm.decoder_dim: expected a multiple of 8 (SAM upscaling), found {self.decoder_dim}")
        if (self.decoder_dim // 2) % self.heatmap_heads:
            raise ConfigError(f"vsm.heatmap_heads: must divide decoder_dim / 2 = {self.decoder_dim // 2}, "
                              f"found {self.heatmap_heads}")
        if self.decoder_dim % self.box_heads:
            raise ConfigError(f"vsm.box_heads: must divide decoder_dim = {self.decoder_dim}, found {self.box_heads}")
        if self.loc_state not in ("at", "before"):
            raise ConfigError(f"vsm.loc_state: expected 'at' or 'before', found {self.loc_state!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"vsm.lora_dropout: expected 0 <= p < 1, found {self.lora_dropout}")
        if not self.lora_targets:
            raise ConfigError("vsm.lora_targets: expected at least one module name")
        if self.input_size < 0:
            raise ConfigError(f"vsm.input_size: expected 0 (the family's default) or a side in px, "
                              f"found {self.input_size}")
        if self.loc_mlp_hidden < 0:
            raise ConfigError(f"vsm.loc_mlp_hidden: expected >= 0, found {self.loc_mlp_hidden}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        d["modules_to_save"] = list(self.modules_to_save)
        d["stem_widths"] = list(self.stem_widths)
        d["attribute_classes"] = list(self.attribute_classes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VSMConfig":
        """Strict: unknown keys are an error (a checkpoint from another version)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"vsm: unknown fields {unknown}")
        return cls(**d)


def _default_weights() -> dict[str, float]:
    return {"lm": 1.0, "heatmap_bce": 2.0, "heatmap_dice": 0.5, "heatmap_iou": 0.5,
            "box_focal": 2.0, "box_l1": 5.0, "box_giou": 2.0}


@dataclass
class VSMLossConfig:
    """Weights and constants of the VSM training loss (reference values in brackets)."""

    weights: dict[str, float] = field(default_factory=_default_weights)
    """Weight of each term in the total (terms in :data:`LOSS_TERMS`; weight 0 skips the term;
    a term missing from a given dict gets weight 0, so pass the full dict to change one weight).
    Reference: CE 1, BCE 2, Dice 0.5; detection x0.1 of (focal 2, L1 5, GIoU 2), but its box
    geometry was frozen; here boxes are learned and the box score is the search's stop signal,
    so the DETR weights are used as they are."""
    match_costs: dict[str, float] = field(default_factory=lambda: {"class": 2.0, "bbox": 5.0, "giou": 2.0})
    presence_miss_iou: float = 0.3
    """``box_presence``: a candidate whose (detached) box overlaps every ground-truth box of its row
    by less than this IoU counts as a miss; the row's best-scoring miss is pushed towards 0."""
    """Hungarian matching costs (reference: class 2, L1 5, GIoU 2)."""
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    dice_smooth: float = 1.0
    """Additive smoothing of the soft Dice ratio, in heatmap pixels (an all-zero target with an
    all-zero prediction scores a loss of 0)."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(LOSS_TERMS))
        if unknown:
            raise ConfigError(f"vsm_loss.weights: unknown terms {unknown}; known: {list(LOSS_TERMS)}")
        self.weights = {**{k: 0.0 for k in LOSS_TERMS}, **{k: float(v) for k, v in self.weights.items()}}
        if any(v < 0 for v in self.weights.values()):
            raise ConfigError(f"vsm_loss.weights: expected >= 0, found {self.weights}")
        if set(self.match_costs) != {"class", "bbox", "giou"}:
            raise ConfigError("vsm_loss.match_costs: expected keys class, bbox, giou; found "
                              f"{sorted(self.match_costs)}")
        if not 0.0 <= self.focal_alpha <= 1.0 or self.focal_gamma < 0:
            raise ConfigError(f"vsm_loss.focal_alpha / focal_gamma: expected alpha in [0, 1] and gamma >= 0, "
                              f"found {self.focal_alpha} / {self.focal_gamma}")
        if self.dice_smooth <= 0:
            raise ConfigError(f"vsm_loss.dice_smooth: expected > 0, found {self.dice_smooth}")
        if not 0.0 < self.presence_miss_iou < 1.0:
            raise ConfigError(f"vsm_loss.presence_miss_iou: expected 0 < iou < 1, found {self.presence_miss_iou}")


TOKEN_CUT_MODES: tuple[str, ...] = ("none", "stride", "topk_norm", "entropy")
"""How the search model's image tokens are cut (:class:`TokenCutConfig`)."""


@dataclass
class TokenCutConfig:
    """Which of a search patch's image tokens the VSM's language model reads (``search.token_cut``;
    :mod:`search.vsm.token_cut`). The decoders read the vision tower's full grid either way; only the
    LM's input (and so the ``<LOC>`` state) changes."""

    mode: Literal["none", "stride", "topk_norm", "entropy"] = "none"
    """``none``: all N tokens (the trained behaviour); ``stride``: every k-th token; ``topk_norm``: the
    tokens with the largest projected-feature norm (both keep ``ceil(N * ratio)``,
    :func:`vwm.budget.prune_token_indices`); ``entropy``: one token per patch of the seed-003 cascade
    over the token grid (:func:`vwm.entropy.select_token_grid`; a coarse patch = the mean of the tokens
    it covers), so the count varies per patch."""
    ratio: float = 1.0
    """``stride`` / ``topk_norm``: share of the N tokens kept (``0 < ratio <= 1``)."""
    entropy_mode: Literal["v1", "v2", "budget"] = "budget"
    """``entropy``: the cascade's mode (:class:`vwm.entropy.EntropyConfig` ``mode``)."""
    alpha: float = 0.5
    """``entropy``: ``budget`` share of the grid's cells kept as tokens (``0 < alpha <= 1``); ``v2``
    multiple of the patch's mean entropy under which a patch stays coarse (``> 0``)."""
    thresholds: tuple[float, float] = (3.0, 2.0)
    """``entropy`` ``v1``: entropy (bits) under which an ``L2`` / an ``L3`` patch stays whole."""
    bins: int = 256
    """``entropy``: histogram bins over the grey levels 0..255."""

    def __post_init__(self) -> None:
        if self.mode not in TOKEN_CUT_MODES:
            raise ConfigError(f"search.token_cut.mode: expected one of {', '.join(TOKEN_CUT_MODES)}, "
                              f"found {self.mode!r}")
        if not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"search.token_cut.ratio: expected 0 < ratio <= 1, found {self.ratio}")
        self.thresholds = tuple(float(t) for t in self.thresholds)  # type: ignore[assignment]
        self.entropy_config()  # the cascade's own checks, under this section's field names

    @property
    def active(self) -> bool:
        """False for ``none``: the LM reads every image token, exactly as without a cut."""
        return self.mode != "none"

    def entropy_config(self):
        """The :class:`vwm.entropy.EntropyConfig` of the ``entropy`` mode.

        Raises:
            ConfigError: naming ``search.token_cut.entropy_mode`` / ``alpha`` / ``thresholds`` / ``bins``.
        """
        from vwm.entropy import EntropyConfig

        try:
            return EntropyConfig(mode=self.entropy_mode, alpha=self.alpha, thresholds=self.thresholds,
                                 bins=self.bins)
        except ConfigError as exc:
            message = str(exc).replace("vision_budget.entropy.mode", "search.token_cut.entropy_mode")
            raise ConfigError(message.replace("vision_budget.entropy.", "search.token_cut.")) from None


@dataclass
class VSMPredictorConfig:
    """Inference knobs of :class:`search.vsm.predictor.VSMPredictor`."""

    max_batch: int = 16
    """Regions per forward pass; a larger ``locate`` call runs in chunks of this size (no effect on results)."""
    cache_size: int = 256
    """Regions whose vision features are kept per image (least recently used are dropped; no effect on
    results)."""
    token_cut: TokenCutConfig = field(default_factory=TokenCutConfig)
    """The image tokens the LM reads per patch (``search.token_cut``; ``none``: all, the trained behaviour)."""

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.cache_size < 1:
            raise ConfigError(f"vsm_predictor.max_batch / cache_size: expected >= 1, found "
                              f"{self.max_batch} / {self.cache_size}")


WORD_PATTERN = re.compile(r"[a-z0-9]+")
"""A word of a crop matcher's vocabulary."""


@dataclass
class CropMatcherConfig:
    """Architecture and the crop it reads (saved beside the weights as ``crop_matcher.json``)."""

    vocabulary: list[str] = field(default_factory=list)
    """The words the matcher knows (rows of its word table)."""
    input_size: int = 64
    """Side S of the square model input (the crop is letterboxed to it)."""
    widths: list[int] = field(default_factory=lambda: [24, 48, 64, 64, 128, 128])
    """Channels of the conv blocks (3x3 conv + BatchNorm + ReLU each)."""
    strides: list[int] = field(default_factory=lambda: [2, 1, 2, 1, 2, 1])
    embed_dim: int = 64
    """Width D of the crop embedding and the word vectors."""
    crop_scale: float = 1.5
    """Context region side / the box's longer side (:func:`seal.core.crops.extract_crop`)."""
    min_context_px: int = 40
    """Minimum context region side, full-image pixels."""
    mean: list[float] = field(default_factory=lambda: [0.481, 0.458, 0.408])
    std: list[float] = field(default_factory=lambda: [0.269, 0.261, 0.276])

    def __post_init__(self) -> None:
        self.vocabulary = [str(w).lower() for w in self.vocabulary]
        self.widths, self.strides = [int(w) for w in self.widths], [int(s) for s in self.strides]
        odd = [w for w in self.vocabulary if not WORD_PATTERN.fullmatch(w)]
        if len(set(self.vocabulary)) != len(self.vocabulary) or odd:
            raise ConfigError(f"crop matcher vocabulary: expected distinct single words, found {self.vocabulary}")
        if not self.widths or len(self.widths) != len(self.strides) or min(self.widths) < 1 \
                or any(s not in (1, 2) for s in self.strides):
            raise ConfigError(f"crop matcher widths / strides: expected equal-length lists, widths >= 1, strides "
                              f"1 or 2, found {self.widths} / {self.strides}")
        if self.input_size < 16 or self.embed_dim < 1 or self.crop_scale < 1.0 or self.min_context_px < 1:
            raise ConfigError("crop matcher: expected input_size >= 16, embed_dim >= 1, crop_scale >= 1, "
                              f"min_context_px >= 1, found {self.input_size} / {self.embed_dim} / "
                              f"{self.crop_scale} / {self.min_context_px}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("crop matcher mean / std: expected 3 values each (std > 0), "
                              f"found {self.mean} / {self.std}")
