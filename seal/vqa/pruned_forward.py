"""Our own forward of a LLaVA model, layer by layer, with the pruners' hook point between layers.

:class:`PrunedLM` calls the model's own modules (the embedding, the vision tower and projector
through ``get_image_features`` and ``get_placeholder_mask``, each ``language_model.layers[i]``, the
rotary embedding, the final norm and the LM head) and builds the attention bias itself, so nothing
in transformers is patched. Before each layer of ``pruners.layers`` the layer's
:class:`seal.vqa.pruners.PrunerHead` scores the vision positions still present and keeps its top-k:

- **soft** (:meth:`PrunedLM.soft_forward`, training): every position stays in the sequence; a
  dropped vision position gets a large negative bias on its key in this and every later layer (the
  additive log of the 0/1 keep mask), straight-through: the gradient reaches the heads through
  ``log sigmoid(logit / temperature)`` of every vision key (``pruners.train_mask: sigmoid``: in
  training nothing is dropped, that log-probability itself is every vision key's bias);
- **hard** (:meth:`PrunedLM.prefill` with ``hard=True``, inference): the dropped positions leave the
  hidden-state sequence, so this and every later layer compute, attend and cache only the kept ones
  (the KV cache has per-layer lengths); the kept positions keep their original RoPE positions
  (explicit ``position_ids``); answers continue on that shortened cache (:meth:`PrunedLM.extend`,
  :meth:`PrunedLM.reply_logprobs`, :meth:`PrunedLM.generate`).

With a 0/1 mask the two agree (a masked key gets zero attention weight), and without pruners the
forward equals the model's own (``tests/test_pruners.py``). Batches of one prompt for the hard mode;
right-padded batches for the soft mode. LLaVA-1.5 layout only (one contiguous block per image,
1-D positions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from seal.core.errors import ConfigError
from seal.vqa.pruners import LayerPruners, gumbel_like, keep_counts, top_k_keep

if TYPE_CHECKING:
    from transformers import LlavaForConditionalGeneration

NEG = -1e9
"""Additive bias of a key no query may attend to (clamped to the model dtype's range)."""


@dataclass
class PrunedState:
    """A prompt read by :meth:`PrunedLM.prefill`: what a continuation needs."""

    cache: object
    """The transformers ``DynamicCache``; layer ``i`` holds ``lengths[i]`` positions."""
    key_bias: list[torch.Tensor]
    """Per layer, (B, lengths[i]) float32 additive bias of the cached keys (0 kept, :data:`NEG`
    dropped or padding, the log keep-mask in the soft mode)."""
    next_position: int
    """RoPE position of the next token (the prompt's original length)."""
    last_logits: torch.Tensor
    """(B, V) float32 logits of the token after the prompt."""
    vision_read: list[int] = field(default_factory=list)
    """Per layer, vision positions of row 0 the layer read (hard) or attended to (soft)."""

    @property
    def lengths(self) -> list[int]:
        return [int(b.shape[1]) for b in self.key_bias]

    def repeat(self, n: int) -> None:
        """Repeat the batch of one ``n`` times (the cache in place), for ``n`` candidate replies."""
        self.cache.batch_repeat_interleave(n)
        self.key_bias = [b.repeat_interleave(n, dim=0) for b in self.key_bias]
        self.last_logits = self.last_logits.repeat_interleave(n, dim=0)


@dataclass
class SoftOutput:
    """:meth:`PrunedLM.soft_forward`'s result."""

    logits: torch.Tensor
    """(B, L, V) logits of every position."""
    layer_hidden: list[torch.Tensor]
    """Per layer, (B, L, D) its output hidden states."""
    keep: dict[int, torch.Tensor]
    """Per pruning layer, (B, L) bool: the vision positions kept from that layer on."""
    keep_logits: dict[int, torch.Tensor]
    """Per pruning layer, (B, L) float32 the head's keep logits (meaningful on vision positions)."""


@dataclass
class _Seq:
    """The sequence between two layers: hidden states and what each position is."""

    hidden: torch.Tensor  # (B, L, D)
    positions: torch.Tensor  # (B, L) long, original RoPE positions
    valid: torch.Tensor  # (B, L) bool, not padding
    vision: torch.Tensor  # (B, L) bool, vision positions
    text: torch.Tensor  # (B, L) bool, prompt text positions (what question-aware heads attend to)
    alive: torch.Tensor  # (B, L) bool, not dropped by a pruner
    st: torch.Tensor  # (B, L) float32, straight-through term of the soft key bias (value 0)
    slot: torch.Tensor  # (B, L) long, a vision position's index in its image's block (0 elsewhere)

    def take(self, idx: torch.Tensor) -> "_Seq":
        """Positions ``idx`` (K,) of a batch of one."""
        return _Seq(*(t[:, idx] for t in (self.hidden, self.positions, self.valid, self.vision, self.text,
                                          self.alive, self.st, self.slot)))


class PrunedLM:
    """A ``LlavaForConditionalGeneration`` run layer by layer with ``pruners`` (None: no pruning)."""

    def __init__(self, model: "LlavaForConditionalGeneration", pruners: LayerPruners | None = None) -> None:
        self.model = model
        self.lm = model.model.language_model
        self.pruners = pruners
        self.image_token_id = int(model.config.image_token_id)
        n_layers = len(self.lm.layers)
        if pruners is not None and max(pruners.cfg.layers) >= n_layers:
            raise ConfigError(f"pruners.layers: expected layer indices below the LLM's {n_layers} layers, found "
                              f"{pruners.cfg.layers}")
        if pruners is not None and pruners.width != self.lm.config.hidden_size:
            raise ConfigError(f"pruners: heads built for LLM width {pruners.width}, this model's is "
                              f"{self.lm.config.hidden_size}")

    # ---- inputs --------------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
              mm_encoder_outputs: dict | None = None) -> torch.Tensor:
        """(B, L, D) input embeddings with the image features scattered into the image-token positions,
        as the model's own forward does. ``pixel_values``: (n_images, 3, S, S); or pre-encoded features
        in ``mm_encoder_outputs`` (:mod:`seal.vqa.token_keep`'s format)."""
        llava = self.model.model
        embeds = llava.get_input_embeddings()(input_ids)
        feats = None
        if mm_encoder_outputs is not None and mm_encoder_outputs.get("image") is not None:
            feats = mm_encoder_outputs["image"].pooler_output
        elif pixel_values is not None:
            pixels = pixel_values.to(self.model.dtype)
            feats = llava.get_image_features(pixel_values=pixels, return_dict=True).pooler_output
        if feats is not None:
            feats = torch.cat(list(feats), dim=0).to(embeds.device, embeds.dtype)  # (n * N, D)
            where = llava.get_placeholder_mask(input_ids, inputs_embeds=embeds, image_features=feats)
            embeds = embeds.masked_scatter(where, feats)
        return embeds

    def _prompt_seq(self, enc: dict, prompt_mask: torch.Tensor | None = None) -> tuple[_Seq, list[list[int]]]:
        device = self.model.device
        ids = enc["input_ids"].to(device)
        mask = enc.get("attention_mask")
        valid = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.to(device).bool()
        hidden = self.embed(ids, None if enc.get("pixel_values") is None else enc["pixel_values"].to(device),
                            enc.get("mm_encoder_outputs"))
        vision = (ids == self.image_token_id) & valid
        text = valid & ~vision if prompt_mask is None else prompt_mask.to(device).bool() & ~vision
        positions = torch.arange(ids.shape[1], device=device).expand_as(ids)
        seq = _Seq(hidden, positions, valid, vision, text, valid.clone(), torch.zeros(ids.shape, device=device),
                   block_slots(vision))
        return seq, block_sizes(vision)

    # ---- the layer loop ------------------------------------------------------------------------
    def _run(self, seq: _Seq, blocks: list[list[int]] | None, cache, past: list[torch.Tensor] | None,
             hard: bool, training: bool = False, masks: dict[int, torch.Tensor] | None = None,
             keep_hidden: bool = False):
        """Every decoder layer over ``seq``, pruning before the pruners' layers when ``blocks`` is given.

        Returns ``(seq, key_bias per layer, hidden per layer, keep, keep_logits, vision_read)``."""
        cfg = self.pruners.cfg if self.pruners is not None and blocks is not None else None
        biases, hiddens, keep, keep_logits, read = [], [], {}, {}, []
        for i, layer in enumerate(self.lm.layers):
            if cfg is not None and i in cfg.layers:
                seq, keep[i], keep_logits[i] = self._prune(i, seq, blocks, hard, training, masks)
            new_bias = torch.where(seq.valid & seq.alive, 0.0, NEG) + seq.st  # (B, L) bias of this layer's keys
            bias = attention_bias(seq.positions, new_bias, None if past is None else past[i])
            cos_sin = self.lm.rotary_emb(seq.hidden, position_ids=seq.positions)
            seq.hidden = layer(seq.hidden, attention_mask=bias.to(seq.hidden.dtype), position_ids=seq.positions,
                               past_key_values=cache, use_cache=cache is not None, position_embeddings=cos_sin)
            biases.append(new_bias if past is None else torch.cat([past[i], new_bias], dim=1))
            read.append(int((seq.vision & seq.alive)[0].sum()))
            if keep_hidden:
                hiddens.append(seq.hidden)
        return seq, biases, hiddens, keep, keep_logits, read

    def _prune(self, layer: int, seq: _Seq, blocks: list[list[int]], hard: bool, training: bool,
               masks: dict[int, torch.Tensor] | None):
        """Choose the vision positions kept from ``layer`` on; hard: remove the others."""
        cfg = self.pruners.cfg
        logits = self.pruners.head(layer)(seq.hidden, seq.hidden, seq.text, seq.slot)  # (B, L)
        candidates = seq.vision & seq.alive
        if training and cfg.train_mask == "sigmoid" and not hard:  # relaxed: every token stays, attenuated
            noise = cfg.gumbel_scale * gumbel_like(logits) if cfg.gumbel_scale > 0 else 0.0
            seq.st = seq.st + F.logsigmoid((logits + noise) / cfg.temperature) * seq.vision
            return seq, candidates, logits
        if masks is not None and layer in masks:
            chosen = candidates & masks[layer].to(candidates.device).bool()
        else:
            noisy = logits + cfg.gumbel_scale * gumbel_like(logits) if training and cfg.gumbel_scale > 0 else logits
            chosen = top_k_keep(noisy, candidates, keep_counts(blocks, cfg.ratio_at(layer)))
        seq.alive = seq.alive & (chosen | ~seq.vision)
        if hard:
            if seq.hidden.shape[0] != 1:
                raise ValueError("hard pruning takes one prompt at a time (batch of one)")
            seq = seq.take(torch.nonzero(seq.alive[0]).flatten())
        else:
            soft = F.logsigmoid(logits / cfg.temperature) * seq.vision  # (B, L), 0 off vision
            seq.st = seq.st + (soft - soft.detach())
        return seq, chosen if hard else seq.alive & seq.vision, logits

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(self.lm.norm(hidden))

    # ---- public forwards -----------------------------------------------------------------------
    def soft_forward(self, batch: dict, prompt_mask: torch.Tensor | None = None, training: bool = False,
                     masks: dict[int, torch.Tensor] | None = None, prune: bool = True) -> SoftOutput:
        """Every position of ``batch`` (``input_ids`` (B, L), ``attention_mask`` (B, L) right-padded,
        ``pixel_values``) through the layers with the soft key mask (``prune=False``: none).

        Args:
            prompt_mask: (B, L) bool, the prompt positions (question-aware heads attend to its text;
                default: every valid position, i.e. a batch of prompts).
            training: Gumbel noise on the top-k (``pruners.gumbel_scale``).
            masks: per pruning layer, (B, L) bool over the positions: keep exactly these vision
                positions (of those still present) instead of the heads' top-k.
        """
        seq, blocks = self._prompt_seq(batch, prompt_mask)
        seq, _, hiddens, keep, keep_logits, _ = self._run(seq, blocks if prune else None, None, None, hard=False,
                                                          training=training, masks=masks, keep_hidden=True)
        return SoftOutput(self._logits(seq.hidden), hiddens, keep, keep_logits)

    def prefill(self, enc: dict, hard: bool = True, masks: dict[int, torch.Tensor] | None = None,
                prune: bool = True) -> PrunedState:
        """Read one prompt (``input_ids`` (1, P), ``attention_mask``, ``pixel_values`` or
        ``mm_encoder_outputs``) into a KV cache; hard: the dropped vision positions really leave the
        sequence and the cache of their layer and every later one; soft: they stay, masked."""
        from transformers import DynamicCache

        with torch.no_grad():
            seq, blocks = self._prompt_seq(enc)
            cache = DynamicCache(config=self.lm.config)
            seq, biases, _, _, _, read = self._run(seq, blocks if prune else None, cache, None, hard=hard, masks=masks)
            last = self._logits(seq.hidden[:, -1]).float()  # (1, V)
        return PrunedState(cache, biases, int(enc["input_ids"].shape[1]), last, read)

    def extend(self, state: PrunedState, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Continue ``state`` by ``ids`` (B, T) text tokens (``mask`` (B, T), right padding); the cache
        and the key biases grow, ``next_position`` moves on by ``T``. Returns (B, T, V) float32 logits."""
        device = self.model.device
        ids = ids.to(device)
        valid = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.to(device).bool()
        positions = (state.next_position + torch.arange(ids.shape[1], device=device)).expand_as(ids)
        none = torch.zeros_like(valid)
        seq = _Seq(self.embed(ids), positions, valid, none, none, valid.clone(), torch.zeros(ids.shape, device=device),
                   torch.zeros_like(ids))
        with torch.no_grad():
            seq, biases, *_ = self._run(seq, None, state.cache, state.key_bias, hard=False)
            logits = self._logits(seq.hidden).float()
        state.key_bias = biases
        state.next_position += int(ids.shape[1])
        state.last_logits = logits[:, -1]
        return logits

    def reply_logprobs(self, enc: dict, replies: Sequence[Sequence[int]], pad_token_id: int,
                       hard: bool = True, masks: dict[int, torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Per-token log-probabilities of each reply after the prompt ``enc`` (as
        :func:`seal.vqa.scoring.reply_token_logprobs`: the prompt read once, the replies right-padded
        in one batched forward on the repeated, pruned cache; ``masks`` as in :meth:`soft_forward`). One
        float32 CPU tensor per reply."""
        if not replies or any(len(r) == 0 for r in replies):
            raise ValueError("every candidate reply needs at least one token")
        state = self.prefill(enc, hard=hard, masks=masks)
        n, length = len(replies), max(len(r) for r in replies)
        ids = torch.full((n, length), pad_token_id, dtype=torch.long)
        mask = torch.zeros((n, length), dtype=torch.long)
        for row, reply in enumerate(replies):
            ids[row, :len(reply)] = torch.tensor(list(reply), dtype=torch.long)
            mask[row, :len(reply)] = 1
        first = state.last_logits[:, None].cpu()  # (1, 1, V): scores reply token 0
        if length > 1:
            state.repeat(n)
            rest = self.extend(state, ids[:, :-1], mask[:, :-1]).cpu()
            logits = torch.cat([first.expand(n, -1, -1), rest], dim=1)  # (n, L, V)
        else:
            logits = first.expand(n, -1, -1)
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)  # (n, L)
        return [logp[row, :len(reply)] for row, reply in enumerate(replies)]

    def last_logits(self, enc: dict, hard: bool = True) -> torch.Tensor:
        """(V,) float32 logits of the token after the prompt ``enc``."""
        return self.prefill(enc, hard=hard).last_logits[0].cpu()

    def generate(self, enc: dict, max_new_tokens: int, stop_ids: Sequence[int], hard: bool = True,
                 masks: dict[int, torch.Tensor] | None = None) -> list[int]:
        """Greedy reply token ids (the stop token included when reached) on the pruned cache."""
        state = self.prefill(enc, hard=hard, masks=masks)
        out: list[int] = []
        for _ in range(max_new_tokens):
            token = int(state.last_logits[0].argmax())
            out.append(token)
            if token in stop_ids:
                break
            self.extend(state, torch.tensor([[token]]))
        return out


def attention_bias(positions: torch.Tensor, key_bias: torch.Tensor, past: torch.Tensor | None) -> torch.Tensor:
    """(B, 1, L, C + L) float32 additive attention bias: the cached keys' ``past`` (B, C) bias, then the
    new keys' ``key_bias`` (B, L) where causal by original position (``positions`` (B, L)), NEG elsewhere."""
    causal = positions[:, None, :] <= positions[:, :, None]  # (B, Lq, Lk)
    new = torch.where(causal, key_bias[:, None, :], NEG)
    if past is not None:
        new = torch.cat([past[:, None, :].expand(-1, positions.shape[1], -1), new], dim=2)
    return new.clamp_min(NEG)[:, None]


def block_slots(vision: torch.Tensor) -> torch.Tensor:
    """(B, L) long: each vision position's index within its run of ``vision`` (B, L) bool (0 off vision)."""
    count = vision.long().cumsum(dim=1)  # (B, L)
    starts = vision & ~torch.cat([vision.new_zeros(vision.shape[0], 1), vision[:, :-1]], dim=1)
    base = torch.cummax(torch.where(starts, count - 1, 0), dim=1).values
    return torch.where(vision, count - 1 - base, 0)


def block_sizes(vision: torch.Tensor) -> list[list[int]]:
    """Per row of ``vision`` (B, L) bool, the lengths of its runs of vision positions (one per image)."""
    out = []
    for row in vision:
        edges = torch.diff(torch.cat([row.new_zeros(1), row, row.new_zeros(1)]).int())
        starts, ends = torch.nonzero(edges == 1).flatten(), torch.nonzero(edges == -1).flatten()
        out.append((ends - starts).tolist())
    return out
