"""``VSMModel``: the V* search model = a VLM backbone + LoRA + ``<LOC>`` + two decoders.

- Backbone: a ``transformers`` VLM of a family :mod:`search.vsm.families` adapts (``llava``: the tiny
  one of :mod:`seal.models.backbone` or a llava-hf checkpoint; ``llava_onevision``; ``qwen2_5_vl``)
  with its processor. The family adapter says how a square patch becomes the decoders' grid and
  the LM's image tokens, and how the LM runs with them.
- Adapter: peft LoRA on the language model's attention projections (never the vision tower),
  plus trainable ``<LOC>`` rows of the input embedding and LM head (peft trainable tokens).
  ``<LOC>`` is added to the tokenizer (and the embeddings resized) when the tokenizer lacks it.
- Heads: :class:`HeatmapDecoder` (SAM mask decoder) and :class:`BoxDecoder` (DETR queries), both
  reading the vision tower's patch features and the last-layer hidden state standing for ``<LOC>``.

Path of one forward (teacher-forced, no generation)::

    patches (B, 3, S, S) -> vision tower -> patch features (B, C_v, g, g)  -> decoders
                                         -> projector / merger -> image tokens (B, N, D_text) -> LM
    prompt ids (B, T) with <LOC> -> LM last hidden state (B, T, D_text) -> <LOC> state (B, D_text)

Checkpoint directory (:meth:`VSMModel.save_pretrained` / :meth:`VSMModel.from_pretrained`)::

    vsm_config.json         format, version, <LOC> id, VSMConfig
    backbone/               the base VLM without adapter + its processor (save_pretrained of both)
    adapter/                peft adapter only (LoRA + <LOC> rows + modules_to_save)
    decoders.safetensors    heatmap_decoder.* and box_decoder.*

Merged checkpoint (``seal merge-lora``, :mod:`search.vsm.merge`; ``"merged": true`` in
``vsm_config.json``): the adapter folded into the weights, the VLM saved at the top level::

    vsm_config.json         as above + "merged": true
    config.json, model.safetensors, processor + tokenizer files   plain VLM (save_pretrained)
    decoders.safetensors    heatmap_decoder.* and box_decoder.*

Loading is strict: any missing, unexpected or mis-shaped tensor is an :class:`InputError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import nn

from search.vsm.box_decoder import BoxDecoder
from search.vsm.config import VSMConfig
from search.vsm.families import VisionFamily, family_for, lora_target_regex
from search.vsm.heatmap_decoder import HeatmapDecoder
from search.vsm.prompts import IGNORE_INDEX, PromptKind, encode_prompts, loc_positions
from seal.core.errors import InputError
from seal.models.tokenizer import LOC_TOKEN

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, ProcessorMixin

    from seal.models.chat import ChatFormat

FORMAT = "seal-vsm"
VERSION = 1
CONFIG_FILE = "vsm_config.json"
DECODERS_FILE = "decoders.safetensors"
MERGED_KEY = "merged"
"""``vsm_config.json`` key: True when the VLM (adapter merged in) sits at the checkpoint's top level."""


@dataclass
class ImageFeatures:
    """Encoded patches (the expensive part; cached by the predictor).

    Attributes:
        vision: (B, C_v, g, g) patch features of the vision tower (which ones: the family adapter,
            :mod:`search.vsm.families`), input of both decoders.
        projected: (B, N, D_text) the projector's image tokens spliced into the LM prompt.
    """

    vision: torch.Tensor
    projected: torch.Tensor

    def __len__(self) -> int:
        return self.vision.shape[0]

    def rows(self, index: Sequence[int] | torch.Tensor) -> "ImageFeatures":
        return ImageFeatures(self.vision[index], self.projected[index])

    @staticmethod
    def stack(items: Sequence["ImageFeatures"]) -> "ImageFeatures":
        return ImageFeatures(torch.cat([f.vision for f in items]), torch.cat([f.projected for f in items]))


@dataclass
class VSMOutput:
    """One batched forward.

    Attributes:
        heatmap: (B, H', W') float32 logits over the square model input (H' = W' = 4 g).
        quality: (B,) float32 predicted IoU of ``heatmap > 0`` with the target mask.
        boxes: (B, Q, 4) float32 ``cxcywh`` in [0, 1] of the model input.
        box_logits: (B, Q) float32, sigmoid = probability the target is that box.
        loc_state: (B, D_text) the ``<LOC>`` hidden state of each row.
        lm_logits: (M, V) logits at the M positions that predict a labelled token, or None.
        lm_targets: (M,) int64 the labelled tokens they predict, or None.
    """

    heatmap: torch.Tensor
    quality: torch.Tensor
    boxes: torch.Tensor
    box_logits: torch.Tensor
    loc_state: torch.Tensor
    lm_logits: torch.Tensor | None = None
    lm_targets: torch.Tensor | None = None
    attributes: torch.Tensor | None = None
    """(B, sum(classes), g, g) auxiliary attribute logits (``vsm.attribute_classes``), or None."""
    attribute_classes: tuple[int, ...] = ()


class VSMModel(nn.Module):
    """Backbone with adapter + decoders. Build with :meth:`build` or :meth:`from_pretrained`.

    Args:
        llava: the backbone already wrapped by peft (``PeftModel``), or a plain VLM whose adapter
            was merged into its weights (:mod:`search.vsm.merge`; then :attr:`is_merged`).
        processor: its processor (tokenizer holds ``<LOC>``).
        cfg: the heads' configuration.
    """

    def __init__(self, llava: "PeftModel | PreTrainedModel", processor: "ProcessorMixin",
                 cfg: VSMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.llava = llava
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.loc_token_id = int(self.tokenizer.convert_tokens_to_ids(LOC_TOKEN))
        config = self.backbone.config
        self.family: VisionFamily = family_for(config, processor, cfg.input_size)
        vision_dim, text_dim = self.family.vision_dim, config.text_config.hidden_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.heatmap_decoder = HeatmapDecoder(vision_dim, text_dim, cfg)
            if cfg.box_decoder == "patches":
                from search.vsm.box_patches import PatchBoxDecoder

                self.box_decoder = PatchBoxDecoder(vision_dim, text_dim, cfg)
            else:
                self.box_decoder = BoxDecoder(vision_dim, text_dim, cfg)
            self.phrase_proj = self.phrase_embed = None
            if cfg.phrase_query:
                dim = config.text_config.hidden_size
                width = cfg.phrase_embed_dim or dim
                if cfg.phrase_embed_dim:
                    self.phrase_embed = nn.Embedding(len(self.tokenizer), width)
                self.phrase_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))
            self.attribute_head = None
            if cfg.attribute_classes:
                self.attribute_head = nn.Conv2d(vision_dim, sum(cfg.attribute_classes), 1)
            self.word_match = None
            if cfg.word_match:
                from search.vsm.word_match import WordMatch

                self.word_match = WordMatch(vision_dim, len(self.tokenizer), cfg.word_match_dim)
            self.detector_stem = None
            if cfg.detector_stem:
                from search.vsm.stem import ConvStem

                self.detector_stem = ConvStem(vision_dim, cfg.stem_widths, self.family.patch_stride)
        for module in self._head_modules().values():
            module.to(self.device)

    # ---- construction --------------------------------------------------------------------------
    @classmethod
    def build(cls, llava: "PreTrainedModel", processor: "ProcessorMixin",
              cfg: VSMConfig | None = None) -> "VSMModel":
        """Wrap a plain base VLM of any family of :mod:`search.vsm.families`: add ``<LOC>`` to its
        tokenizer if missing (the embeddings are resized only when the new id has no row yet), attach
        a fresh LoRA adapter on the language model, new decoders."""
        from peft import get_peft_model

        cfg = cfg or VSMConfig()
        family = family_for(llava.config, processor, cfg.input_size)  # unsupported family: before any change
        tokenizer = processor.tokenizer
        if LOC_TOKEN not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [LOC_TOKEN]},
                                         replace_extra_special_tokens=False)  # keep the family's own
            if len(tokenizer) > llava.get_input_embeddings().weight.shape[0]:
                llava.resize_token_embeddings(len(tokenizer))
        loc_id = int(tokenizer.convert_tokens_to_ids(LOC_TOKEN))
        return cls(get_peft_model(llava, _lora_config(cfg, loc_id, family, llava)), processor, cfg)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu", dtype: "torch.dtype | None" = None,
                        trainable: bool = False) -> "VSMModel":
        """Load a directory written by :meth:`save_pretrained` (local files only, strict).

        A merged checkpoint (``"merged": true``, from ``seal merge-lora``) loads its top-level VLM
        as it is, with no adapter; it cannot be loaded ``trainable``.

        Raises:
            InputError: missing files, another format or version, a ``<LOC>`` id that differs from
                the one trained, or weights that do not match the configuration.
        """
        from seal.core.weights import load_safetensors
        from search.vsm.base import load_base

        p = Path(path)
        if not p.is_dir():
            raise InputError("expected a VSM checkpoint directory (from VSMModel.save_pretrained)", p)
        if not (p / CONFIG_FILE).is_file():
            from search.vsm.plain_base import plain_base_message

            raise InputError(plain_base_message(p) or f"not a VSM checkpoint: {CONFIG_FILE} is missing", p)
        try:
            meta = json.loads((p / CONFIG_FILE).read_text())
            if not isinstance(meta, dict):
                raise ValueError(f"expected a JSON object, found {type(meta).__name__}")
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {CONFIG_FILE} ({exc})", p) from None
        merged = meta.get(MERGED_KEY, False)
        if not isinstance(merged, bool):
            raise InputError(f"{CONFIG_FILE}: {MERGED_KEY!r} must be true or false, found {merged!r}", p)
        for name in (("config.json",) if merged else ("backbone", "adapter")) + (DECODERS_FILE,):
            if not (p / name).exists():
                raise InputError(f"not a {'merged ' if merged else ''}VSM checkpoint: {name} is missing", p)
        if merged and trainable:
            raise InputError("a merged checkpoint has no adapter to train; resume from the adapter checkpoint", p)
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise InputError(f"{CONFIG_FILE}: expected format {FORMAT!r} version {VERSION}, found "
                             f"{meta.get('format')!r} version {meta.get('version')}", p)
        try:
            cfg = VSMConfig.from_dict(dict(meta["vsm"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{CONFIG_FILE}: bad 'vsm' section ({exc})", p) from None
        except InputError as exc:
            raise InputError(f"{CONFIG_FILE}: {exc}", p) from None
        llava_dir = p if merged else p / "backbone"
        llava, processor = load_base(llava_dir, device=device, dtype=dtype)  # damaged weights: InputError
        loc_id = processor.tokenizer.convert_tokens_to_ids(LOC_TOKEN)
        if loc_id != meta.get("loc_token_id"):
            raise InputError(f"tokenizer maps {LOC_TOKEN} to id {loc_id}, the heads were trained with id "
                             f"{meta.get('loc_token_id')}", llava_dir)
        model = cls(llava if merged else _load_adapter(llava, p / "adapter", trainable), processor, cfg)
        model._load_decoders(load_safetensors(p / DECODERS_FILE, device=str(model.device)), p / DECODERS_FILE)
        for module in model._head_modules().values():
            module.requires_grad_(trainable)
        return model.train(trainable)

    def save_pretrained(self, path: str | Path, search_defaults: dict | None = None, second_stage: str | None = None,
                        recipe: dict | None = None) -> Path:
        """Write backbone (without adapter), adapter, decoders, ``vsm_config.json`` and the checkpoint's
        ``manifest.json`` (kind ``vsm``) into ``path``.

        The backbone is saved from a copy with the adapter layers unloaded (peft ``unload``), so
        saving needs memory for a second copy of the backbone for a moment. A merged model writes
        the merged layout instead (the VLM at the top level, ``"merged": true``).

        Args:
            search_defaults: the ``search`` settings its scores were tuned for (manifest).
            second_stage: a subfolder of ``path`` already holding the crop matcher (its own manifest).
            recipe: how it was made (command, git revision), recorded in the manifest.
        """
        from seal.core.manifest import model_files, write_manifest

        import copy

        from safetensors.torch import save_file

        from search.vsm.base import save_base

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        if self.is_merged:
            save_base(self.llava, self.processor, out)
        else:
            plain = copy.deepcopy(self.llava).unload()  # the base weights, adapter layers removed
            save_base(plain, self.processor, out / "backbone")
            del plain
            self.llava.save_pretrained(str(out / "adapter"), save_embedding_layers=False)
        tensors = {f"{prefix}.{k}": v.detach().contiguous().cpu()
                   for prefix, module in self._head_modules().items() for k, v in module.state_dict().items()}
        save_file(tensors, str(out / DECODERS_FILE))
        meta = {"format": FORMAT, "version": VERSION, "loc_token_id": self.loc_token_id, "vsm": self.cfg.to_dict()}
        if self.is_merged:
            meta[MERGED_KEY] = True
        (out / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        files = model_files(out)
        if not self.is_merged:
            files += [f"{sub}/{name}" for sub in ("backbone", "adapter") for name in model_files(out / sub)]
        write_manifest(out, "vsm", meta, files, search_defaults=search_defaults, second_stage=second_stage,
                       recipe=recipe)
        return out

    def _head_modules(self) -> dict[str, nn.Module]:
        """The modules saved in ``decoders.safetensors``, by tensor-name prefix."""
        heads: dict[str, nn.Module] = {"heatmap_decoder": self.heatmap_decoder, "box_decoder": self.box_decoder}
        if self.detector_stem is not None:
            heads["detector_stem"] = self.detector_stem
        if self.phrase_proj is not None:
            heads["phrase_proj"] = self.phrase_proj
        if self.phrase_embed is not None:
            heads["phrase_embed"] = self.phrase_embed
        if self.attribute_head is not None:
            heads["attribute_head"] = self.attribute_head
        if self.word_match is not None:
            heads["word_match"] = self.word_match
        return heads

    def _load_decoders(self, tensors: dict[str, torch.Tensor], source: Path) -> None:
        groups: dict[str, dict[str, torch.Tensor]] = {name: {} for name in self._head_modules()}
        for key, value in tensors.items():
            prefix, _, rest = key.partition(".")
            if prefix not in groups:
                raise InputError(f"unexpected tensor {key!r} (expected {' / '.join(p + '.*' for p in groups)})",
                                 source)
            groups[prefix][rest] = value
        for prefix, state in groups.items():
            try:
                getattr(self, prefix).load_state_dict(state, strict=True)
            except RuntimeError as exc:
                first = " ".join(str(exc).split())[:300]
                raise InputError(f"{prefix} weights do not match vsm_config.json ({first})", source) from None

    # ---- shapes --------------------------------------------------------------------------------
    @property
    def is_merged(self) -> bool:
        """True when :attr:`llava` is a plain VLM (adapter merged into its weights), not a ``PeftModel``."""
        from peft import PeftModel

        return not isinstance(self.llava, PeftModel)

    @property
    def backbone(self) -> "PreTrainedModel":
        """The base VLM (adapter layers injected in place, or merged into the weights)."""
        return self.llava if self.is_merged else self.llava.get_base_model()

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @property
    def input_size(self) -> int:
        """Side S (pixels) of the square model input."""
        return self.family.input_size

    @property
    def grid_size(self) -> int:
        """Side g of the decoders' vision feature grid."""
        return self.family.grid_size

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """``(H', W')`` of the heatmap logits (the SAM decoder upscales the grid 4x)."""
        return 4 * self.grid_size, 4 * self.grid_size

    @property
    def image_tokens(self) -> int:
        """Prompt tokens one patch occupies (image-token positions of one prompt row)."""
        return self.family.image_tokens

    @property
    def chat(self) -> "ChatFormat":
        """The processor's chat format (its own template: prompt rendering, reply ids)."""
        from seal.models.chat import chat_format

        return chat_format(self.processor)

    @property
    def fill_color(self) -> tuple[int, int, int]:
        """Letterbox padding colour: the processor's mean colour (what its own padding uses)."""
        mean = self.processor.image_processor.image_mean
        return tuple(int(round(255 * m)) for m in mean)  # type: ignore[return-value]

    # ---- inputs --------------------------------------------------------------------------------
    def pixel_batch(self, patches: Sequence[np.ndarray]) -> torch.Tensor:
        """(S, S, 3) uint8 RGB patches -> (B, 3, S, S) float32 normalised ``pixel_values`` on the CPU
        (the family's image processor; a data loader's worker calls this, :meth:`preprocess` moves it)."""
        s = self.input_size
        for i, patch in enumerate(patches):
            if tuple(np.shape(patch)) != (s, s, 3):
                raise ValueError(f"patch {i}: expected shape ({s}, {s}, 3), found {tuple(np.shape(patch))}")
        writable = [np.array(p) for p in patches]  # crops are read-only views; the processor wants arrays it may own
        return self.family.preprocess(writable)

    def preprocess(self, patches: Sequence[np.ndarray]) -> torch.Tensor:
        """(S, S, 3) uint8 RGB patches -> (B, 3, S, S) normalised ``pixel_values`` on the model device."""
        return self.pixel_batch(patches).to(self.device, self.backbone.dtype)

    def prompt_batch(self, kinds: Sequence[PromptKind], targets: Sequence[str], with_reply: bool,
                     image_tokens: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """Prompt batch (``input_ids``, ``attention_mask``, ``labels``; (B, T) int64) on the CPU, in the
        base's chat template with :attr:`image_tokens` image tokens per row (``image_tokens``: one count
        per row instead, after a token cut, :mod:`search.vsm.token_cut`)."""
        counts = self.image_tokens if image_tokens is None else image_tokens
        return encode_prompts(self.chat, kinds, targets, counts, with_reply, self.family.image_token)

    def prompts(self, kinds: Sequence[PromptKind], targets: Sequence[str], with_reply: bool,
                image_tokens: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """:meth:`prompt_batch` on the model device."""
        return {k: v.to(self.device) for k, v in self.prompt_batch(kinds, targets, with_reply, image_tokens).items()}

    # ---- forward -------------------------------------------------------------------------------
    def encode_images(self, pixel_values: torch.Tensor) -> ImageFeatures:
        """Run the vision tower (frozen) and the projector once for B patches.

        Args:
            pixel_values: (B, 3, S, S) from :meth:`preprocess`.
        """
        vision, projected = self.family.encode(self.backbone, pixel_values)  # (B, C_v, g, g), (B, N, D_text)
        vision = vision.float()  # the decoders' input: the heads run in float32 whatever the backbone's dtype
        if self.detector_stem is not None:
            vision = vision + self.detector_stem(pixel_values.float())  # (B, C_v, g, g): local detail
        return ImageFeatures(vision=vision, projected=projected)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      features: ImageFeatures, tokens: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """(B, T, D_text) last-layer (normed) hidden states of the prompts with their patches spliced in
        (each row's :attr:`image_tokens` image-token positions take its patch's projected tokens).

        ``tokens``: B tensors (K_i, D_text), the image tokens each row reads after a token cut
        (:mod:`search.vsm.token_cut`; row i's prompt then holds K_i image tokens); None: every row reads
        its patch's N projected tokens."""
        if len(features) != input_ids.shape[0]:
            raise ValueError(f"{input_ids.shape[0]} prompt rows but {len(features)} encoded patches")
        projected = features.projected if tokens is None else list(tokens)
        return self.family.hidden_states(self.backbone, input_ids, attention_mask, projected)

    def loc_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """(B, D_text) the query of each row's decoders: the hidden state standing for its ``<LOC>``
        (see ``VSMConfig.loc_state``), plus, with ``vsm.phrase_query``, the projected mean input
        embedding of the prompt's text tokens before ``<LOC>`` (image tokens and padding excluded)."""
        pos = loc_positions(input_ids, self.loc_token_id, attention_mask)  # (B,)
        loc = hidden[torch.arange(hidden.shape[0], device=hidden.device), pos - int(self.cfg.loc_state == "before")]
        loc = loc.float()  # the heads run in float32 whatever the backbone's dtype
        if self.phrase_proj is None:
            return loc
        ids, keep = self.phrase_tokens(input_ids, attention_mask)
        if self.phrase_embed is not None:  # bag of words over a trainable table: (B, D_phrase)
            phrase = (self.phrase_embed(ids) * keep.unsqueeze(-1)).sum(1)
        else:  # mean of the LM's input embeddings: (B, D_text)
            emb = self.backbone.get_input_embeddings()(ids)
            phrase = (emb * keep.unsqueeze(-1)).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)
        return loc + self.phrase_proj(phrase.float())

    def phrase_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, keep)``, both (B, T): the prompt's text tokens before ``<LOC>`` (image tokens and
        padding excluded; their ids set to 0), which hold the target phrase."""
        pos = loc_positions(input_ids, self.loc_token_id, attention_mask)  # (B,)
        t = torch.arange(input_ids.shape[1], device=input_ids.device)
        keep = (attention_mask > 0) & (input_ids != self.family.image_token_id) & (
            t.unsqueeze(0) < pos.unsqueeze(1))
        return torch.where(keep, input_ids, torch.zeros_like(input_ids)), keep

    def detect(self, vision: torch.Tensor, loc: torch.Tensor, input_ids: torch.Tensor,
               attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate boxes (B, Q, 4) ``cxcywh`` and logits (B, Q) of the box decoder for (B, C_v, g, g)
        features and (B, D_text) ``<LOC>`` states, plus the word scorer's logits with ``vsm.word_match``
        (``input_ids`` / ``attention_mask``: the rows' prompts, (B, T))."""
        boxes, logits = self.box_decoder(vision, loc)
        if self.word_match is not None:
            logits = logits + self.word_match(vision, *self.phrase_tokens(input_ids, attention_mask))
        return boxes, logits

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, features: ImageFeatures | None = None,
                labels: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None) -> VSMOutput:
        """The full training forward: LM (+ reply logits when ``labels``) and both decoders.

        Args:
            input_ids, attention_mask: (B, T) int64 prompt rows (one ``<LOC>`` each).
            features: B encoded patches (row i for prompt row i), or None with ``pixel_values``.
            labels: (B, T) int64 with :data:`IGNORE_INDEX` outside the reply, or None.
            pixel_values: (B, 3, S, S) patches from :meth:`preprocess`, encoded here (so a wrapped
                model, e.g. by DDP, is called once per step); give exactly one of the two.
        """
        if (features is None) == (pixel_values is None):
            raise ValueError("give exactly one of features (encoded patches) or pixel_values")
        if features is None:
            features = self.encode_images(pixel_values)
        hidden = self.hidden_states(input_ids, attention_mask, features)  # (B, T, D_text)
        loc = self.loc_states(input_ids, attention_mask, hidden)
        heatmap, quality = self.heatmap_decoder(features.vision, loc)
        boxes, box_logits = self.detect(features.vision, loc, input_ids, attention_mask)
        lm_logits = lm_targets = None
        if labels is not None:
            shifted = labels[:, 1:]  # the token each position predicts
            keep = shifted != IGNORE_INDEX
            lm_logits = self.backbone.lm_head(hidden[:, :-1][keep])  # (M, V)
            lm_targets = shifted[keep]
        attributes = None if self.attribute_head is None else self.attribute_head(features.vision.float())
        return VSMOutput(heatmap=heatmap, quality=quality, boxes=boxes, box_logits=box_logits, loc_state=loc,
                         lm_logits=lm_logits, lm_targets=lm_targets, attributes=attributes,
                         attribute_classes=self.cfg.attribute_classes)


def _lora_config(cfg: VSMConfig, loc_token_id: int, family: VisionFamily | None = None,
                 base: "PreTrainedModel | None" = None):
    """LoRA on the language model's ``cfg.lora_targets`` (the family's regex excludes the vision tower;
    None: the one all supported families share); the ``<LOC>`` rows of the input embedding, and of the
    LM head unless ``base`` ties it to the embedding."""
    from peft import LoraConfig

    tied = base is not None and base.get_output_embeddings().weight is base.get_input_embeddings().weight
    rows = {"embed_tokens": [loc_token_id]} if tied else {"embed_tokens": [loc_token_id], "lm_head": [loc_token_id]}
    regex = family.lora_target_regex(cfg.lora_targets) if family is not None else lora_target_regex(cfg.lora_targets)
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=regex,
        trainable_token_indices=rows if cfg.train_loc_token else None,
        modules_to_save=list(cfg.modules_to_save) or None,
    )


def _load_adapter(llava: "nn.Module", adapter_dir: Path, trainable: bool) -> "PeftModel":
    """``llava`` wrapped by the peft adapter saved in ``adapter_dir`` (strict, see :func:`_check_adapter`)."""
    from peft import PeftModel

    from seal.core.weights import load_errors, load_safetensors

    load_safetensors(adapter_dir / "adapter_model.safetensors", what="adapter")  # truncated, corrupt or NaN: one line
    with load_errors(adapter_dir, "adapter"):
        peft_model = PeftModel.from_pretrained(llava, str(adapter_dir), is_trainable=trainable)
    _check_adapter(peft_model, adapter_dir)
    return peft_model


def _check_adapter(model: "PeftModel", adapter_dir: Path, adapter_name: str = "default") -> None:
    """Strict adapter load: the file holds exactly the tensors the config of adapter ``adapter_name`` creates."""
    from peft import get_peft_model_state_dict

    from seal.core.weights import safetensors_keys

    files = list(adapter_dir.glob("adapter_model.safetensors"))
    if not files:
        raise InputError("adapter_model.safetensors is missing", adapter_dir)
    found = safetensors_keys(files[0])
    expected = set(get_peft_model_state_dict(model, adapter_name=adapter_name, save_embedding_layers=False).keys())
    if found != expected:
        missing, extra = sorted(expected - found)[:5], sorted(found - expected)[:5]
        raise InputError(f"adapter weights do not match adapter_config.json (missing {missing}, unexpected {extra})",
                         adapter_dir)
