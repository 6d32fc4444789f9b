"""``VQAModel``: the VQA LLM (any supported ``transformers`` VLM: LLaVA, LLaVA-OneVision, Qwen2.5-VL)
behind named methods.

- :meth:`VQAModel.answer`: greedy free-form answer (may be the "missing objects" refusal).
- :meth:`VQAModel.score_options`: mean token log-likelihood of each option as the reply (the
  official V*Bench protocol: options not shown, reply ends with ``</s>``), one batched forward.
- :meth:`VQAModel.choose_letter`: options shown as ``(A) ...`` lines, the letter with the highest
  next-token probability wins (the VLMEvalKit protocol).
- :meth:`VQAModel.text_pass`: the no-image pass the value-of-vision policy reads.

Image arguments are upright RGB PIL images in full resolution; every prompt is laid out by
:func:`vwm.layout.build_prompt` (global view, then the working-memory targets, then the question)
and rendered in the checkpoint's own chat template (:mod:`seal.models.chat`); replies (scored
options, letters, the forced refusal prefix) are encoded in that template too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from PIL import Image

from seal.core.errors import ConfigError, InputError
from seal.core.tokens import OPTION_LETTERS
from seal.models.chat import chat_format, encode_reply
from seal.models.vlm import image_token_id
from seal.vqa.prompts import encode_prompt, letter_question
from seal.vqa.refusal import REFUSAL_PREFIX, parse_missing_targets
from seal.vqa.object_layout import seal_object_prompt
from seal.vqa.token_keep import TokenKeep, check_family, keep_vision_tokens, to_device
from seal.vqa.scoring import prompt_state, reply_token_logprobs
from vwm.budget import resolve_view_square
from vwm.layout import VisualWorkingMemory, VWMConfig

if TYPE_CHECKING:
    from seal.core.manifest import Manifest
    from seal.models.seal_objects import ObjectProjector
    import torch
    from transformers import BatchFeature, PreTrainedModel, ProcessorMixin


@dataclass
class TextPassOutput:
    """What the text-only pass tells about a question before any pixel is seen.

    Attributes:
        pooled: (D,) float32, mean over the prompt tokens of the final (normed) hidden states.
        last_hidden: (D,) float32, final hidden state of the last prompt token (what predicts the reply).
        next_token_logits: (V,) float32 logits of the first reply token.
        entropy: entropy (nats) of the next-token distribution.
        margin: top-1 minus top-2 next-token probability, in [0, 1].
        letter_probs: with options, the distribution over the option letters (sums to 1); else None.
    """

    pooled: "torch.Tensor"
    last_hidden: "torch.Tensor"
    next_token_logits: "torch.Tensor"
    entropy: float
    margin: float
    letter_probs: list[float] | None = None


class VQAModel:
    """Wraps ``(model, processor)`` of a VLM (e.g. ``LlavaForConditionalGeneration`` + ``LlavaProcessor``,
    ``Qwen2_5_VLForConditionalGeneration`` + ``Qwen2_5_VLProcessor``); all methods run without gradients.

    Raises:
        InputError: the processor has no usable chat template.
    """

    def __init__(self, model: "PreTrainedModel", processor: "ProcessorMixin",
                 vwm_config: VWMConfig | None = None, path: str | Path | None = None) -> None:
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.chat = chat_format(processor, path)
        """The checkpoint's chat template: prompt rendering, reply encoding, stop tokens."""
        self.image_token_id = image_token_id(processor)
        """Id of the tokens an image occupies in ``input_ids``."""
        self.last_image_tokens = 0
        """Image tokens in the ``input_ids`` of the last prompt :meth:`encode` made (what the model saw)."""
        self.token_keep: TokenKeep | None = None
        self.merger = None
        """The token merger of ``token_keep``'s ``merger`` mode (loaded by :meth:`keep_tokens`)."""
        self.pruned = None
        """``token_keep``'s ``pruners`` mode: the model run layer by layer with its pruners
        (:class:`seal.vqa.pruned_forward.PrunedLM`, hard mode), for every prompt with an image."""
        """The pruning proxy (:meth:`keep_tokens`): each image keeps only these of its vision tokens."""
        self.object_projector: "ObjectProjector | None" = None
        """A converted SEAL VQA model's object projector (manifest ``vwm_layout: seal_objects``): its
        prompts follow the SEAL token layout (:mod:`seal.vqa.object_layout`)."""
        # encode() refuses a prompt longer than the context with one error; the tokenizer's own
        # "sequence length is longer" warning (a second line, once per tokenizer) is not wanted
        warned = getattr(self.tokenizer, "deprecation_warnings", None)
        if isinstance(warned, dict):
            warned["sequence-length-is-longer-than-the-specified-maximum"] = True
        self.vwm_config = resolve_view_square(vwm_config or VWMConfig(), processor)
        """The prompt layout, its ``view_square`` decided for this model's processor."""
        self.path: Path | None = None if path is None else Path(path)
        """The checkpoint directory it was loaded from (None when built in memory)."""
        self.manifest: "Manifest | None" = None
        """The checkpoint's manifest; None for a plain transformers checkpoint (no ``manifest.json``)."""

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", dtype: "str | torch.dtype | None" = None,
             vwm_config: VWMConfig | None = None, device_map: str | None = None) -> "VQAModel":
        """Load a checkpoint directory with :func:`seal.models.vlm.load_vlm` (local, strict; any
        family of :data:`seal.models.vlm.VLM_MODEL_TYPES`).

        ``dtype``: ``fp32`` | ``bf16`` | ``fp16`` (or a ``torch.dtype``); ``device_map``: passed to
        ``from_pretrained`` (e.g. ``"auto"``), else the model moves to ``device``.

        A directory with a ``manifest.json`` is a seal checkpoint and its manifest is read strictly
        (kind ``vqa``, every listed file present); one without is a plain transformers checkpoint."""
        from seal.core.manifest import MANIFEST, read_manifest
        from seal.models.vlm import load_vlm

        manifest = read_manifest(path, "vqa") if (Path(path) / MANIFEST).is_file() else None
        model, processor = load_vlm(path, device=device, dtype=dtype, device_map=device_map)
        vqa = cls(model, processor, vwm_config, path=path)
        vqa.manifest = manifest
        if manifest is not None and manifest.config.get("vwm_layout") is not None:
            from seal.models.seal_objects import LAYOUT, load_object_projector

            if manifest.config["vwm_layout"] != LAYOUT:
                raise InputError(f"manifest.json: unknown vwm_layout {manifest.config['vwm_layout']!r} (known: "
                                 f"{LAYOUT})", Path(path))
            vqa.object_projector = load_object_projector(path, dtype=model.dtype, device=str(model.device))
        return vqa

    def keep_tokens(self, keep: TokenKeep | None) -> None:
        """From now on every image in a prompt keeps only ``keep``'s share of its vision tokens, the
        others removed from the model's input (:mod:`seal.vqa.token_keep`); None = every token.

        Raises:
            ConfigError: a model family whose tokens cannot be removed.
        """
        if keep is not None:
            check_family(self.model, keep.mode)
            if self.object_projector is not None:
                raise ConfigError("vision_budget.pruning_mode: a converted SEAL VQA model lays its images out in "
                                  "its own token counts (vwm_layout seal_objects); set pruning_mode: none")
        self.token_keep = keep
        self.merger = self.pruned = None
        modes = keep.mode.split("+") if keep is not None else []
        if "pruners" in modes:
            from seal.core.paths import resolve_dir
            from seal.vqa.pruned_forward import PrunedLM
            from seal.vqa.pruners import LayerPruners

            path = resolve_dir(keep.pruners_path, "vision_budget.pruners_path")  # type: ignore[union-attr]
            # alone each head keeps ``ratio``; after the merger (which spends ``ratio``) their trained share
            ratio = keep.ratio if keep.mode == "pruners" else None  # type: ignore[union-attr]
            self.pruned = PrunedLM(self.model, LayerPruners.load(path, keep_ratios=ratio).to(self.model.device))
        if "merger" in modes:
            from seal.core.paths import resolve_dir
            from seal.vqa.merger import load_merger

            path = resolve_dir(keep.merger_path, "vision_budget.merger_path")  # type: ignore[union-attr]
            self.merger = load_merger(path, device=self.model.device)

    def vision_tokens_read(self, n_tokens: int) -> int:
        """Vision tokens the LLM reads of an image of ``n_tokens``: with the ``pruners`` mode the mean
        over its layers (all of them before the first pruned layer, then each head's keep count), rounded
        up; else ``n_tokens``."""
        if self.pruned is None:
            return n_tokens
        from seal.vqa.pruners import keep_counts

        cfg = self.pruned.pruners.cfg
        n_layers = len(self.pruned.lm.layers)
        read = []
        for layer in range(n_layers):
            ratios = [r for first, r in zip(cfg.layers, cfg.keep_ratios) if first <= layer]
            read.append(keep_counts([[n_tokens]], ratios[-1])[0] if ratios else n_tokens)
        return max(1, math.ceil(sum(read) / n_layers - 1e-9))

    def crop_image_tokens(self, tokens: int, n_crops: int) -> int:
        """Image tokens the model reads for one VWM crop that its processor expands into ``tokens``, in a
        memory of ``n_crops`` crops: ``tokens`` itself, except in a converted SEAL model's layout with 3
        or more crops (each then 32 object tokens, :mod:`seal.vqa.object_layout`)."""
        from seal.vqa.object_layout import image_paths

        if self.object_projector is None or image_paths(1 + n_crops)[-1] == "long":
            return tokens
        return int(self.object_projector.cfg.num_latents)

    def hit_check_settings(self) -> dict:
        """How this model must be asked when it reads a box's words for the hit check (crop scale,
        context, attribute kinds): what its manifest recorded (``config.hit_check``), else {}."""
        if self.manifest is None:
            return {}
        return dict(self.manifest.config.get("hit_check") or {})

    @property
    def hidden_size(self) -> int:
        """Width of the language model's hidden states (what the policy head reads)."""
        text = getattr(self.model.config, "text_config", None) or self.model.config
        return int(text.hidden_size)

    @property
    def pad_id(self) -> int:
        """Id padding candidate replies: the tokenizer's pad token, else the first stop token."""
        pad = self.tokenizer.pad_token_id
        return int(self.chat.stop_ids[0] if pad is None else pad)

    def reply_ids(self, reply: str, add_eos: bool = True) -> list[int]:
        """Token ids of ``reply`` as the assistant's turn after a prompt (:func:`seal.models.chat.encode_reply`)."""
        return encode_reply(self.tokenizer, reply, add_eos)

    # ---- prompts -------------------------------------------------------------------------------
    @property
    def context_tokens(self) -> int | None:
        """Longest sequence the model takes: the smaller of the language model's
        ``max_position_embeddings`` and the tokenizer's ``model_max_length`` (None when neither is set)."""
        text = getattr(self.model.config, "text_config", None) or self.model.config
        limits = (getattr(text, "max_position_embeddings", None), getattr(self.tokenizer, "model_max_length", None))
        limits = [int(x) for x in limits if isinstance(x, int) and 0 < x < 10**9]  # unset: a huge sentinel
        return min(limits) if limits else None

    def encode(self, text: str, vwm: VisualWorkingMemory | None) -> "BatchFeature":
        """:func:`seal.vqa.prompts.encode_prompt` of ``text`` over ``vwm``, checked against the context.

        Raises:
            InputError: the prompt (template, images and ``text``) leaves no room for a reply in
                :attr:`context_tokens`; says how many tokens it has and the limit.
        """
        enc = encode_prompt(self.processor, text, vwm)
        if self.object_projector is not None and enc.get("pixel_values") is not None:
            enc = seal_object_prompt(self.model, self.object_projector, enc, self.image_token_id)
        elif self.merger is not None and enc.get("pixel_values") is not None:
            from seal.vqa.merged_forward import merged_prompt

            n = int((enc["input_ids"] == self.image_token_id).sum()) // int(enc["pixel_values"].shape[0])
            enc = merged_prompt(self.model, self.merger, enc, self.image_token_id,
                                max(1, math.ceil(n * self.token_keep.ratio)))  # type: ignore[union-attr]
        elif self.token_keep is not None and self.pruned is None and enc.get("pixel_values") is not None:
            enc = keep_vision_tokens(self.model, enc, self.image_token_id, self.token_keep)
        self.last_image_tokens = int((enc["input_ids"] == self.image_token_id).sum())
        if self._pruned(enc):  # what the layers read, on average
            n = _n_images(enc)
            self.last_image_tokens = n * self.vision_tokens_read(self.last_image_tokens // n)
        limit, n = self.context_tokens, int(enc["input_ids"].shape[1])
        if limit is not None and n >= limit:
            own = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            where = f" ({self.path / 'config.json'})" if self.path is not None else ""
            raise InputError(f"question too long: its prompt has {n} tokens ({own} of them the question), the VQA "
                             f"model's context holds {limit}{where}; shorten the question")
        return enc

    def memory(self, image: Image.Image | None, vwm: VisualWorkingMemory | None) -> VisualWorkingMemory | None:
        """The working memory a prompt is laid out from.

        ``vwm`` when given (``image``, if also given, must have its global image's size), else the
        global view alone for ``image``, else None (text only).
        """
        if vwm is None:
            return None if image is None else VisualWorkingMemory(global_image=image, config=self.vwm_config)
        if image is not None and image.size != vwm.image_size:
            raise ValueError(f"image size {image.size} differs from the working memory's global image "
                             f"{vwm.image_size}")
        return vwm

    # ---- free-form -----------------------------------------------------------------------------
    def answer(self, image: Image.Image | None, question: str, vwm: VisualWorkingMemory | None = None,
               max_new_tokens: int = 64, prefix: str = "") -> str:
        """Greedy answer to ``question`` about ``image`` (None: text only), decoded and stripped; with
        ``prefix``, the reply is forced to begin with it and the returned text begins with it too."""
        import torch

        enc = self.encode(question, self.memory(image, vwm))
        inputs = to_device(enc, self.model.device)
        start = inputs["input_ids"].shape[1]
        if prefix:
            forced = torch.tensor([encode_reply(self.tokenizer, prefix, add_eos=False)],
                                  dtype=inputs["input_ids"].dtype, device=self.model.device)  # (1, T)
            inputs = extend_prompt(inputs, forced)
        if self._pruned(enc):
            reply = self.pruned.generate(inputs, max_new_tokens, self.chat.stop_ids)  # type: ignore[union-attr]
            return self.tokenizer.decode(reply, skip_special_tokens=True).strip()
        # explicit M-RoPE positions (Qwen2.5-VL's entropy cut): generate counts on from the last prompt
        # token's (text, so max + 1), not from image_grid_thw (tests/test_qwen_entropy.py)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                      eos_token_id=self.chat.stop_ids, pad_token_id=self.pad_id)
        return self.tokenizer.decode(out[0, start:], skip_special_tokens=True).strip()

    def _pruned(self, enc: dict) -> bool:
        """Whether ``enc`` runs through the layer pruners (their mode is on and it shows an image)."""
        return self.pruned is not None and _n_images(enc) > 0

    def _last_logits(self, enc: dict) -> "torch.Tensor":
        """(V,) logits of the token after the prompt ``enc`` (through the pruners when they apply)."""
        if self._pruned(enc):
            return self.pruned.last_logits(enc)  # type: ignore[union-attr]
        return prompt_state(self.model, enc)[1]

    def _reply_logprobs(self, enc: dict, replies: list[list[int]]) -> list["torch.Tensor"]:
        """Per-token log-probabilities of each reply after ``enc`` (through the pruners when they apply)."""
        if self._pruned(enc):
            return self.pruned.reply_logprobs(enc, replies, self.pad_id)  # type: ignore[union-attr]
        return reply_token_logprobs(self.model, enc, replies, self.pad_id)

    def refusal_probability(self, image: Image.Image | None, question: str,
                            vwm: VisualWorkingMemory | None = None) -> float:
        """Probability that the reply to ``question`` begins as the "missing objects" refusal does
        (its first token; one forward of the prompt)."""
        import torch

        enc = self.encode(question, self.memory(image, vwm))
        last_logits = self._last_logits(enc)
        first = encode_reply(self.tokenizer, REFUSAL_PREFIX, add_eos=False)[0]
        return float(torch.softmax(last_logits, dim=-1)[first])

    def missing_targets(self, image: Image.Image | None, question: str, vwm: VisualWorkingMemory | None = None,
                        max_new_tokens: int = 64) -> tuple[str, list[str] | None]:
        """``(answer, targets)``: the greedy answer and the objects it asks to search for (None if it answered)."""
        text = self.answer(image, question, vwm, max_new_tokens)
        return text, parse_missing_targets(text)

    # ---- multiple choice ----------------------------------------------------------------------
    def score_options(self, image: Image.Image | None, question: str, options: Sequence[str],
                      vwm: VisualWorkingMemory | None = None, reduce: str = "mean") -> list[float]:
        """Mean (``reduce="sum"``: summed) per-token log-likelihood of each option (plus the turn's end,
        e.g. ``</s>`` or ``<|im_end|>``) as
        the reply to ``question``; the sums are the options' log-probabilities as whole replies.

        The options are not shown in the prompt. Returns ``len(options)`` finite floats (higher is
        better), computed with the prompt encoded once and the options in one batched forward.
        """
        if reduce not in ("mean", "sum"):
            raise ValueError(f"score_options: reduce must be 'mean' or 'sum', found {reduce!r}")
        if not options:
            raise ValueError("score_options needs at least one option")
        enc = self.encode(question, self.memory(image, vwm))
        replies = [encode_reply(self.tokenizer, str(opt)) for opt in options]
        logps = self._reply_logprobs(enc, replies)
        return [float(lp.mean() if reduce == "mean" else lp.sum()) for lp in logps]

    def choose_letter(self, image: Image.Image | None, question: str, options: Sequence[str],
                      vwm: VisualWorkingMemory | None = None) -> tuple[str, list[float]]:
        """Show the options as ``(A) ...`` lines and pick the most probable letter.

        Returns:
            ``(letter, probs)``: the chosen letter (``"A"`` for the first option) and the probability
            of each option's letter, renormalised over the ``len(options)`` letters.
        """
        enc = self.encode(letter_question(question, options), self.memory(image, vwm))
        probs = self._letter_probs(enc, len(options), self._last_logits(enc))
        best = max(range(len(probs)), key=probs.__getitem__)
        return OPTION_LETTERS[best], probs

    def _letter_probs(self, enc, n_options: int, last_logits: "torch.Tensor") -> list[float]:
        """Letter distribution: next-token logits when every letter is one token, else the letters'
        full reply log-likelihoods (without ``</s>``)."""
        import torch

        letters = [encode_reply(self.tokenizer, OPTION_LETTERS[i], add_eos=False) for i in range(n_options)]
        if all(len(ids) == 1 for ids in letters) and len({ids[0] for ids in letters}) == n_options:
            scores = last_logits.float()[[ids[0] for ids in letters]]
        else:
            logps = self._reply_logprobs(enc, letters)
            scores = torch.stack([lp.sum() for lp in logps])
        return torch.softmax(scores.cpu(), dim=-1).tolist()

    # ---- value-of-vision features -------------------------------------------------------------
    def text_pass(self, question: str, options: Sequence[str] | None = None) -> TextPassOutput:
        """The text-only pass (no image): hidden-state summary and next-token uncertainty.

        With ``options`` the prompt shows them as in :meth:`choose_letter` and ``letter_probs`` is set.
        """
        import torch

        text = question if options is None else letter_question(question, options)
        enc = self.encode(text, None)
        hidden, logits = prompt_state(self.model, enc)  # (P, D), (V,)
        probs = torch.softmax(logits, dim=-1)
        top = torch.topk(probs, k=min(2, probs.numel())).values
        entropy = float(-(probs * torch.log(probs.clamp_min(1e-30))).sum())
        margin = float(top[0] - top[1]) if top.numel() > 1 else 1.0
        letter_probs = None if options is None else self._letter_probs(enc, len(options), logits)
        return TextPassOutput(pooled=hidden.mean(dim=0).cpu(), last_hidden=hidden[-1].cpu(),
                              next_token_logits=logits.cpu(), entropy=entropy, margin=margin,
                              letter_probs=letter_probs)


def _n_images(enc: dict) -> int:
    """Images in the prompt ``enc``: its ``pixel_values`` rows, or the pre-encoded ones a token cut left
    in ``mm_encoder_outputs``."""
    if enc.get("pixel_values") is not None:
        return int(enc["pixel_values"].shape[0])
    encoded = (enc.get("mm_encoder_outputs") or {}).get("image")
    return 0 if encoded is None else len(encoded.pooler_output)


def extend_prompt(inputs: dict, ids: "torch.Tensor") -> dict:
    """``inputs`` (batch of one) with the token ids ``ids`` (1, T) appended: ``input_ids`` grows, the
    attention mask with ones, per-token type ids (Qwen2.5-VL's ``mm_token_type_ids``: text) with zeros,
    explicit M-RoPE ``position_ids`` (3, 1, P) with text positions ``max + 1 ...`` (the prompt's rope delta)."""
    import torch

    out = dict(inputs)
    length = inputs["input_ids"].shape[1]
    out["input_ids"] = torch.cat([inputs["input_ids"], ids], dim=1)
    for key in ("attention_mask", "mm_token_type_ids", "token_type_ids"):
        value = inputs.get(key)
        if value is not None and value.dim() == 2 and value.shape[1] == length:
            fill = torch.ones_like(ids) if key == "attention_mask" else torch.zeros_like(ids)
            out[key] = torch.cat([value, fill.to(value.dtype)], dim=1)
    positions = inputs.get("position_ids")
    if positions is not None:  # (3, 1, P)
        after = positions.max() + 1 + torch.arange(ids.shape[1], device=positions.device, dtype=positions.dtype)
        out["position_ids"] = torch.cat([positions, after.view(1, 1, -1).expand(positions.shape[0], 1, -1)], dim=-1)
    return out
