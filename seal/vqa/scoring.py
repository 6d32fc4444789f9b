"""Log-likelihood of candidate replies after one prompt, with the prompt encoded once.

The prompt (image views included) runs through the model once with the KV cache on; the cache is
repeated over the candidates and all candidates run in ONE batched forward of their reply tokens
only. The first reply token is scored from the prompt's last logits, token ``j`` from the
candidate's position ``j - 1``. Candidates are right-padded, so padding never precedes a real
token and the causal positions of real tokens are exactly those of a one-by-one computation.

Positions: a 1-D RoPE model (LLaVA, LLaVA-OneVision) counts on from its cache; Qwen2.5-VL's M-RoPE
gives an image's tokens shared grid positions, so the continuation's positions are given explicitly
from the prompt's rope delta (:func:`seal.models.vlm.rope_delta`). Each family's cached scores equal
an uncached full forward per candidate (``tests/test_vlm_families.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from seal.vqa.token_keep import to_device

if TYPE_CHECKING:
    import torch
    from transformers import BatchFeature, LlavaForConditionalGeneration


def reply_token_logprobs(model: "LlavaForConditionalGeneration", prompt: "BatchFeature",
                         replies: Sequence[Sequence[int]], pad_token_id: int) -> list["torch.Tensor"]:
    """Per-token log-probabilities of each reply given the prompt.

    Args:
        model: the LLaVA model (any device; inputs are moved to it).
        prompt: :func:`seal.vqa.prompts.encode_prompt` output, batch of one.
        replies: token ids of each candidate reply (non-empty).
        pad_token_id: id used to right-pad the candidates.

    Returns:
        One float32 CPU tensor of shape ``(len(reply),)`` per reply: ``log p(token | prompt, previous)``.
    """
    import torch

    from seal.models.vlm import rope_delta

    if not replies or any(len(r) == 0 for r in replies):
        raise ValueError("every candidate reply needs at least one token")
    device = model.device
    inputs = to_device(prompt, device)
    with torch.no_grad():
        out = model(**inputs, use_cache=True)
    first = out.logits[:, -1:].float()  # (1, 1, V): predicts reply token 0
    return continuation_logprobs(model, first, out.past_key_values, inputs["attention_mask"], replies, pad_token_id,
                                 rope_delta(model, inputs))


def continuation_logprobs(model: "LlavaForConditionalGeneration", first: "torch.Tensor", cache,
                          prompt_mask: "torch.Tensor", replies: Sequence[Sequence[int]],
                          pad_token_id: int, delta: int = 0) -> list["torch.Tensor"]:
    """Per-token log-probabilities of each reply after an already encoded prompt.

    Args:
        first: (1, 1, V) float logits of the prompt's last position (they score reply token 0).
        cache: the prompt's KV cache (batch of one); repeated over the replies in place, so pass a
            copy when it must serve again.
        prompt_mask: (1, P) the prompt's attention mask.
        replies, pad_token_id: as in :func:`reply_token_logprobs`.
        delta: the prompt's rope delta (:func:`seal.models.vlm.rope_delta`; 0 for a text-only prompt).

    Returns:
        One float32 CPU tensor ``(len(reply),)`` per reply.
    """
    import torch

    from seal.models.vlm import continuation_position_ids

    device = model.device
    n, length = len(replies), max(len(r) for r in replies)
    ids = torch.full((n, length), pad_token_id, dtype=torch.long, device=device)
    mask = torch.zeros((n, length), dtype=torch.long, device=device)
    for row, reply in enumerate(replies):
        ids[row, :len(reply)] = torch.tensor(list(reply), dtype=torch.long)
        mask[row, :len(reply)] = 1
    first = first.to(device)
    with torch.no_grad():
        if length > 1:
            cache.batch_repeat_interleave(n)
            prompt_mask = prompt_mask.to(device).expand(n, -1)
            positions = continuation_position_ids(model, prompt_mask.shape[1], delta, n, length - 1)
            rest = model(input_ids=ids[:, :-1], attention_mask=torch.cat([prompt_mask, mask[:, :-1]], dim=1),
                         past_key_values=cache, use_cache=True, position_ids=positions)
            logits = torch.cat([first.expand(n, -1, -1), rest.logits.float()], dim=1)  # (n, L, V)
        else:
            logits = first.expand(n, -1, -1)
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)  # (n, L)
    return [logp[row, :len(reply)].cpu() for row, reply in enumerate(replies)]


def prompt_state(model: "LlavaForConditionalGeneration",
                 prompt: "BatchFeature") -> tuple["torch.Tensor", "torch.Tensor"]:
    """One forward of the prompt through the LLaVA body.

    Returns:
        ``(hidden, last_logits)``: ``hidden`` (P, D) float32, the final (normed) hidden states the
        LM head reads; ``last_logits`` (V,) float32, the logits of the token after the prompt.
    """
    import torch

    inputs = to_device(prompt, model.device)
    with torch.no_grad():
        hidden = model.model(**inputs, use_cache=False).last_hidden_state[0]  # (P, D)
        last_logits = model.lm_head(hidden[-1:])[0]  # (V,)
    return hidden.float(), last_logits.float()
