"""``SealVSM``: the published SEAL visual search model (``craigwu/seal_vsm_7b``) in the project's format.

A converted directory (:mod:`search.seal_vsm.convert`) holds::

    llava/               llava-hf LlavaForConditionalGeneration + processor (the LM with [LOC],
                         <im_start>, <im_end>; CLIP L/14 tower; mm_projector)
    owlvit/              transformers OwlViTVisionModel (save_pretrained)
    heads.safetensors    OWL class/box heads + layer_norm, visual_projection, SAM prompt encoder and
                         mask decoder, the [LOC] MLPs (loc_to_det, loc_to_seg)
    seal_vsm.json        head sizes, the [LOC] token, prompts
    manifest.json        kind "vsm", backend "seal_vsm", converted_from, search_defaults

How one region is read (the reference's ``VSMForCausalLM.inference``): the LM sees the llava_v1
prompt ``<im_start><image><im_end>\\nPlease locate the {target} in this image.`` with the trained
reply ``Sure, [LOC].``; the last-layer (final-norm) state of the position that predicts ``[LOC]``
is the query of both heads (:mod:`search.seal_vsm.heads`). The reference generates the reply and
reads that state; here the reply is teacher-forced, which gives the same state whenever the model
would generate it (without a KV cache, as the reference runs, the state does not depend on later
tokens), and one forward serves a batch of regions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seal.core.errors import InputError
from search.seal_vsm.heads import SealVSMHeads, SealVSMHeadsConfig

LLAVA_DIR = "llava"
OWL_DIR = "owlvit"
HEADS = "heads.safetensors"
CONFIG = "seal_vsm.json"
BACKEND = "seal_vsm"


@dataclass
class SealVSMConfig:
    """What ``seal_vsm.json`` records beside the weights."""

    heads: SealVSMHeadsConfig = field(default_factory=SealVSMHeadsConfig)
    loc_token: str = "[LOC]"
    """The token whose predicting state queries the heads."""
    image_text: str = "<im_start><image><im_end>\n"
    """How the image opens the user turn (``mm_use_im_start_end``)."""
    locate_prompt: str = "Please locate the {target} in this image."
    locate_reply: str = "Sure, [LOC]."
    cue_prompt: str = ("According to the common sense knowledge and possible visual cues, what is the most "
                       "likely location of the {target} in the image?")
    pad_top_left: bool = True
    """The VSM pads the region to a square at the top-left for CLIP (its ``expand2square``)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SealVSMConfig":
        data = dict(data)
        heads = SealVSMHeadsConfig(**data.pop("heads", {}))
        return cls(heads=heads, **data)


class SealVSM(nn.Module):
    """LLaVA LM + OWL-ViT tower + heads. Use :meth:`from_pretrained`; eval mode, no gradients needed.

    Attributes:
        llava: ``LlavaForConditionalGeneration``; ``processor`` its ``LlavaProcessor``.
        owl: ``OwlViTVisionModel``; ``heads``: :class:`SealVSMHeads`.
    """

    def __init__(self, cfg: SealVSMConfig, llava: nn.Module, processor: Any, owl: nn.Module, heads: SealVSMHeads):
        super().__init__()
        self.cfg, self.llava, self.processor, self.owl, self.heads = cfg, llava, processor, owl, heads
        self.tokenizer = processor.tokenizer
        self.loc_id = int(self.tokenizer.convert_tokens_to_ids(cfg.loc_token))
        if self.loc_id == self.tokenizer.unk_token_id:
            raise InputError(f"the tokenizer has no {cfg.loc_token} token")
        self.image_id = int(llava.config.image_token_index)
        self.image_tokens = int(llava.config.image_seq_length)

    # ---- sizes of the two inputs ----------------------------------------------------------------
    @property
    def clip_side(self) -> int:
        return int(self.llava.config.vision_config.image_size)

    @property
    def owl_side(self) -> int:
        return int(self.owl.config.image_size)

    # ---- encoders (cached per region by the localizer) ----------------------------------------------
    @torch.no_grad()
    def encode(self, clip_pixels: torch.Tensor, owl_pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Vision features of a batch of regions.

        Args:
            clip_pixels: ``(B, 3, S_clip, S_clip)`` CLIP-normalised (region padded to a square).
            owl_pixels: ``(B, 3, S_owl, S_owl)`` OWL-normalised (region stretched to a square).

        Returns:
            ``(image_embeds (B, image_tokens, D_lm), feature_map (B, g, g, C_owl))``.
        """
        dtype = self.llava.dtype
        feats = self.llava.model.get_image_features(pixel_values=clip_pixels.to(dtype))
        feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats
        image_embeds = torch.stack(list(feats)) if isinstance(feats, (list, tuple)) else feats
        out = self.owl(pixel_values=owl_pixels.to(self.owl.dtype))
        fmap = self.heads.feature_map(out.last_hidden_state, self.owl.vision_model.post_layernorm)
        return image_embeds.reshape(clip_pixels.shape[0], self.image_tokens, -1), fmap

    # ---- the language model --------------------------------------------------------------------
    def prompt_ids(self, question: str, reply: str | None) -> list[int]:
        """Token ids of the llava_v1 prompt, ``<image>`` once (:meth:`_embed` expands it). As the
        reference's ``tokenizer_image_token``, the text on each side of ``<image>`` is tokenized
        on its own (BOS only before the first part)."""
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        if reply is not None:
            msgs.append({"role": "assistant", "content": reply})
        text = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=reply is None)
        before, image, after = text.partition(self.tokenizer.convert_ids_to_tokens(self.image_id))
        if not image:
            raise InputError("the chat template rendered no image token; is this a converted SEAL VSM?")
        return (list(self.tokenizer(before)["input_ids"]) + [self.image_id]
                + list(self.tokenizer(after, add_special_tokens=False)["input_ids"]))

    def _embed(self, ids: list[int], image_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids (B, L), inputs_embeds (B, L, D))`` with the image expanded and spliced in."""
        pos = ids.index(self.image_id)
        full = ids[:pos] + [self.image_id] * self.image_tokens + ids[pos + 1:]
        input_ids = torch.tensor(full, device=image_embeds.device).expand(image_embeds.shape[0], -1)
        embeds = self.llava.get_input_embeddings()(input_ids).clone()
        embeds[:, pos:pos + self.image_tokens] = image_embeds.to(embeds.dtype)
        return input_ids, embeds

    @torch.no_grad()
    def loc_states(self, target: str, image_embeds: torch.Tensor) -> torch.Tensor:
        """The ``[LOC]``-predicting state ``(B, D_lm)`` for ``target`` in each region."""
        question = self.cfg.locate_prompt.format(target=target)
        ids = self.prompt_ids(question, self.cfg.locate_reply)
        if self.loc_id not in ids:
            raise InputError(f"the reply {self.cfg.locate_reply!r} does not tokenize to a {self.cfg.loc_token} token")
        loc_pos = ids.index(self.loc_id) + self.image_tokens - 1  # in the expanded sequence
        _, embeds = self._embed(ids, image_embeds)
        hidden = self.llava.model.language_model(inputs_embeds=embeds).last_hidden_state  # final-norm states
        return hidden[:, loc_pos - 1]

    @torch.no_grad()
    def answer(self, question: str, image_embeds: torch.Tensor, max_new_tokens: int) -> str:
        """Greedy reply to ``question`` about one region (``image_embeds`` (1, T, D))."""
        ids = self.prompt_ids(question, None)
        input_ids, embeds = self._embed(ids, image_embeds[:1])
        gen = self.llava.generate(inputs_embeds=embeds, attention_mask=torch.ones_like(input_ids),
                                  max_new_tokens=max_new_tokens, do_sample=False,
                                  pad_token_id=self.tokenizer.pad_token_id)
        return self.tokenizer.decode(gen[0], skip_special_tokens=True).strip()

    # ---- I/O -----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu", dtype: torch.dtype | None = None) -> "SealVSM":
        """Load a converted directory strictly (see the module docstring).

        Raises:
            InputError: a part is missing or does not match its config.
        """
        from safetensors.torch import load_file
        from transformers import OwlViTVisionModel

        from seal.models.backbone import load_llava

        root = Path(path)
        for name in (CONFIG, HEADS, OWL_DIR, LLAVA_DIR):
            if not (root / name).exists():
                raise InputError(f"expected {name} in a converted SEAL VSM directory, found none", root / name)
        try:
            cfg = SealVSMConfig.from_dict(json.loads((root / CONFIG).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            raise InputError(f"cannot read {CONFIG} ({type(exc).__name__}: {exc})", root / CONFIG) from None
        llava, processor = load_llava(root / LLAVA_DIR, device=device, dtype=dtype)
        try:
            owl = OwlViTVisionModel.from_pretrained(str(root / OWL_DIR), local_files_only=True,
                                                    dtype=dtype or torch.float32)
        except (OSError, ValueError) as exc:
            first = str(exc).splitlines()[0][:160]
            raise InputError(f"cannot load the OWL-ViT tower ({first})", root / OWL_DIR) from None
        heads = SealVSMHeads(cfg.heads, owl.config)
        try:
            heads.load_state_dict(load_file(str(root / HEADS)), strict=True)
        except (RuntimeError, OSError) as exc:
            first = str(exc).splitlines()[0][:200]
            raise InputError(f"heads do not match {CONFIG}: {first}", root / HEADS) from None
        heads = heads.to(device=device).eval()  # float32 whatever the backbone's dtype (see heads.py)
        model = cls(cfg, llava, processor, owl.to(device).eval(), heads)
        return model.eval()

    def save_config(self, root: Path) -> None:
        (root / CONFIG).write_text(json.dumps(asdict(self.cfg), indent=2) + "\n", encoding="utf-8")
