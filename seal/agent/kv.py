"""KV-cache reuse of the text-only pass (seed 001, F2: ``cache_reuse``, best effort).

The text-first pass runs the question alone through the VQA LLM. When the policy then picks
NO_VISION, the answer reads the *same* prompt: with the likelihood protocol the options are scored
as replies to the question's prompt (``"USER: {question} ASSISTANT:"`` in our tiny models' template),
exactly the text-pass prompt. :func:`cached_text_pass`
runs that prompt once with the KV cache on and keeps it; :func:`score_options_from_cache` then
scores the options from the kept cache (one batched forward of the reply tokens only), so the
prompt is not encoded a second time.

:func:`cached_text_pass` returns the same :class:`seal.vqa.TextPassOutput` as
:meth:`seal.vqa.VQAModel.text_pass` (parity-tested); a model whose forward gives no cache (or
hidden states) falls back to recomputing, and the result records why.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from seal.vqa.model import TextPassOutput
from seal.vqa.prompts import letter_question
from seal.vqa.token_keep import to_device

if TYPE_CHECKING:
    import torch

    from seal.vqa import VQAModel


@dataclass
class CachedTextPass:
    """A text-only pass and, when the model gave one, its prompt's KV cache.

    Attributes:
        output: what :meth:`VQAModel.text_pass` returns for the same prompt.
        prompt_text: the user text of the pass (the question, or question + option lines).
        attention_mask: (1, P) int64 mask of the prompt; None without a cache.
        past_key_values: the transformers cache of the P prompt tokens; None when unavailable.
        note: why there is no cache (empty when there is one).
    """

    output: TextPassOutput
    prompt_text: str
    attention_mask: "torch.Tensor | None" = None
    past_key_values: Any = None
    note: str = ""

    @property
    def has_cache(self) -> bool:
        return self.past_key_values is not None


def cached_text_pass(vqa: "VQAModel", question: str, options: Sequence[str] | None = None) -> CachedTextPass:
    """The text-only pass with its KV cache kept (one forward of the prompt).

    With ``options`` the prompt shows them as ``(A) ...`` lines (and ``letter_probs`` is set), as
    in :meth:`VQAModel.text_pass`.
    """
    import torch

    text = question if options is None else letter_question(question, options)
    enc = vqa.encode(text, None)  # a question longer than the context: InputError
    inputs = to_device(enc, vqa.model.device)
    with torch.no_grad():
        out = vqa.model(**inputs, use_cache=True, output_hidden_states=True)
    if out.past_key_values is None or not out.hidden_states:
        return CachedTextPass(vqa.text_pass(question, options), text, note="the model returned no KV cache")
    hidden = out.hidden_states[-1][0].float()  # (P, D), the final normed states the LM head reads
    logits = out.logits[0, -1].float()  # (V,)
    probs = torch.softmax(logits, dim=-1)
    top = torch.topk(probs, k=min(2, probs.numel())).values
    entropy = float(-(probs * torch.log(probs.clamp_min(1e-30))).sum())
    margin = float(top[0] - top[1]) if top.numel() > 1 else 1.0
    letter_probs = None if options is None else vqa._letter_probs(enc, len(options), logits)
    output = TextPassOutput(pooled=hidden.mean(dim=0).cpu(), last_hidden=hidden[-1].cpu(),
                            next_token_logits=logits.cpu(), entropy=entropy, margin=margin,
                            letter_probs=letter_probs)
    return CachedTextPass(output, text, inputs["attention_mask"], out.past_key_values)


def score_options_from_cache(vqa: "VQAModel", state: CachedTextPass, options: Sequence[str]) -> list[float]:
    """Mean per-token log-likelihood of each option (plus the turn's end) as the reply to the cached prompt.

    Equals ``vqa.score_options(None, state.prompt_text, options)`` without re-encoding the prompt.
    The kept cache is copied, never modified, so it can serve again.
    """
    from seal.vqa.scoring import continuation_logprobs

    if not state.has_cache:
        raise ValueError(f"no KV cache to reuse ({state.note})")
    if not options:
        raise ValueError("score_options_from_cache needs at least one option")

    replies = [vqa.reply_ids(str(opt)) for opt in options]
    first = state.output.next_token_logits.view(1, 1, -1)  # (1, 1, V): predicts reply token 0
    logps = continuation_logprobs(vqa.model, first, copy.deepcopy(state.past_key_values), state.attention_mask,
                                  replies, vqa.pad_id)  # a text-only prompt: rope delta 0
    return [float(lp.mean()) for lp in logps]
