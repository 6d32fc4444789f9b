"""GPU memory per process of a LoRA fine-tuning step, computed from parameter counts (docs/TRAINING_7B.md).

``python -m training.memory`` prints the table of the 7B document: a LLaVA-1.5-7B base (LLaMA-7B
decoder, CLIP ViT-L/14-336 tower, MLP projector; parameter counts from transformers' own classes,
built on the meta device), LoRA on every linear layer of the decoder, the projector fully trained,
the tower frozen; one sequence of ``seq`` tokens, gradient checkpointing, bf16 autocast.

The model (bytes; ``P`` frozen parameters stored in bf16, ``T`` trained ones in fp32, ``N`` processes):

- weights: ``2 P + 4 T`` (DDP, ZeRO-2), ``(2 P + 4 T) / N`` (FSDP full shard, ZeRO-3);
- gradients (fp32, trained parameters only): ``4 T``, ``/ N`` when sharded (FSDP, ZeRO-2/3); DDP
  keeps a second copy in its all-reduce buckets (``+ 4 T``);
- Adam states (fp32 ``exp_avg`` + ``exp_avg_sq``): ``8 T``, ``/ N`` when sharded (FSDP, ZeRO-2/3);
- activations (:func:`activation_bytes`), the same on every process: each decoder layer's input
  kept for recomputation (``2 S h`` per layer), one layer's activations while it is recomputed in
  the backward pass (``16 S h + 8 S i``: norms, q/k/v, attention output, residual in bf16, and
  the gate/up/SiLU/product tensors of the MLP), and the language-model head (``10 S V``: bf16
  logits, their fp32 log-softmax kept for the loss and its gradient);
- FSDP / ZeRO-3 also hold the gathered weights of the unit being computed and the one prefetched
  (``2 x 2 x`` the largest layer's bf16 weights).

Not counted: the CUDA context and allocator slack (about 1-2 GB per GPU), the frozen vision tower's
transient activations, the dataloader. :func:`measure_step_peak` measures the same quantities on CPU
(tests/test_train_ddp.py checks the formula against it on a small LLaMA).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable

GB = 1e9
STRATEGIES = ("ddp", "zero2", "fsdp")
"""``ddp``: replicated; ``zero2``: DeepSpeed ZeRO-2 (gradients and optimizer states sharded);
``fsdp``: FSDP full shard, which has ZeRO-3's memory (everything sharded)."""


@dataclass(frozen=True)
class Shape:
    """What the memory of one training step depends on."""

    layers: int
    """Decoder layers ``L``."""
    hidden: int
    """Hidden size ``h``."""
    intermediate: int
    """MLP size ``i``."""
    vocab: int
    """Vocabulary ``V``."""
    frozen: int
    """Frozen parameters ``P`` (bf16)."""
    trained: int
    """Trained parameters ``T`` (fp32: LoRA, fully trained modules)."""
    largest_layer: int
    """Parameters of the largest decoder layer (FSDP's unit of gathering)."""


def activation_bytes(shape: Shape, seq: int) -> int:
    """Peak activation bytes of one sequence of ``seq`` tokens with gradient checkpointing (bf16)."""
    s, h, i = seq, shape.hidden, shape.intermediate
    return shape.layers * 2 * s * h + (16 * s * h + 8 * s * i) + 10 * s * shape.vocab


def per_gpu_bytes(shape: Shape, strategy: str, n: int, seq: int = 2048) -> dict[str, float]:
    """Bytes per process by part (``weights``, ``gradients``, ``adam``, ``activations``, ``gathered``,
    ``total``) for ``strategy`` (:data:`STRATEGIES`) on ``n`` processes."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {STRATEGIES}, found {strategy!r}")
    p, t = shape.frozen, shape.trained
    shard_all = strategy == "fsdp"
    shard_states = strategy in ("zero2", "fsdp")
    parts = {
        "weights": (2 * p + 4 * t) / (n if shard_all else 1),
        "gradients": 4 * t / (n if shard_states else 1) + (4 * t if strategy == "ddp" and n > 1 else 0),
        "adam": 8 * t / (n if shard_states else 1),
        "activations": activation_bytes(shape, seq),
        "gathered": 2 * 2 * shape.largest_layer if shard_all and n > 1 else 0,
    }
    parts["total"] = sum(parts.values())
    return parts


def llava_7b_shape(lora_r: int = 128, train_projector: bool = True) -> Shape:
    """LLaVA-1.5-7B's counts: the stock ``LlavaForConditionalGeneration`` built on the meta device
    (no memory), LoRA of rank ``lora_r`` on every linear layer of the decoder (``r (in + out)``
    each)."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    text = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=32064, max_position_embeddings=4096)
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                              num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(LlavaConfig(text_config=text, vision_config=vision,
                                                          image_token_index=32000))
    total = sum(p.numel() for p in model.parameters())
    decoder = model.model.language_model
    lora = sum(lora_r * (m.in_features + m.out_features) for m in decoder.layers.modules()
               if isinstance(m, torch.nn.Linear))
    projector = sum(p.numel() for p in model.model.multi_modal_projector.parameters()) if train_projector else 0
    layer = max(sum(p.numel() for p in block.parameters()) for block in decoder.layers)
    return Shape(layers=text.num_hidden_layers, hidden=text.hidden_size, intermediate=text.intermediate_size,
                 vocab=text.vocab_size, frozen=total - projector, trained=lora + projector, largest_layer=layer)


def measure_step_peak(step: Callable[[], None], keep: list) -> tuple[int, int]:
    """``(peak, end)``: the most bytes of CPU tensor storage that ``step()`` held at once beyond the
    storages of the tensors in ``keep`` (weights, optimizer states: counted by the caller), and those
    still held when it returned. Every aten op's new output storage is counted until it is freed."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class _Tracker(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live = {id(t.untyped_storage()): 0 for t in keep}
            self.now = self.peak = 0
            self.refs: list = []

        def _free(self, key: int) -> None:
            self.now -= self.live.pop(key, 0)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                    storage = t.untyped_storage()
                    if id(storage) not in self.live and storage.nbytes():
                        self.live[id(storage)] = storage.nbytes()
                        self.now += storage.nbytes()
                        self.peak = max(self.peak, self.now)
                        self.refs.append(weakref.ref(storage, lambda _, k=id(storage): self._free(k)))
            return out

    tracker = _Tracker()
    with tracker:
        step()
    return tracker.peak, tracker.now


def table(seq: int = 2048, lora_r: int = 128) -> str:
    """The markdown table of per-GPU GB for DDP (1 GPU = no sharding) and FSDP / ZeRO on 2, 4, 8 GPUs."""
    shape = llava_7b_shape(lora_r)
    rows = [("DDP", "ddp", n) for n in (1, 2, 8)] + [("ZeRO-2", "zero2", n) for n in (2, 4, 8)] + \
           [("FSDP full shard / ZeRO-3", "fsdp", n) for n in (2, 4, 8)]
    out = [f"LLaVA-1.5-7B: {shape.frozen / 1e9:.3f} B frozen, {shape.trained / 1e6:.1f} M trained (LoRA r={lora_r} "
           f"+ projector); batch 1 x {seq} tokens",
           "", "| strategy | GPUs | weights | gradients | Adam | activations | gathered | total GB |",
           "|---|---|---|---|---|---|---|---|"]
    for name, strategy, n in rows:
        b = per_gpu_bytes(shape, strategy, n, seq)
        out.append(f"| {name} | {n} | " + " | ".join(f"{b[k] / GB:.2f}" for k in
                                                      ("weights", "gradients", "adam", "activations", "gathered",
                                                       "total")) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    for r in (128, 16):
        print(table(lora_r=r), end="\n\n")
