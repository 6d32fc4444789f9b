"""The VQA recipe's auxiliary dense loss: per-patch colour / pattern / shape classes on the vision tower.

Answers alone teach a from-scratch vision tower slowly (one option token per example, and a tiny
model finds it easier to memorise its training scenes). A linear head on the tower's feature layer
(the hidden states the projector reads) classifies every patch of every view by the attributes of
the object under it (:func:`training.vqa_data.view_attribute_maps`), so the tower learns colours,
patterns and shapes directly. The head exists only during training: :class:`VQATrainModel` wraps the
LLaVA and the head, and the export writes the LLaVA alone (a plain checkpoint).

Shapes: feature layer (N_img, 1 + g*g, C_v) -> logits (N_img, sum(classes), g, g); labels
(N_img, A, g, g) int64 with -100 ignored.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from search.vsm.losses import attribute_cross_entropy


class VQATrainModel(nn.Module):
    """A LLaVA plus the auxiliary attribute head, trained together; :attr:`llava` is what is exported.

    Args:
        llava: ``LlavaForConditionalGeneration``.
        classes: classes per attribute channel (``training.vsm_data.attribute_classes``).
        balanced: weigh object and background cells equally (see
            :func:`search.vsm.losses.attribute_cross_entropy`).
    """

    def __init__(self, llava: nn.Module, classes: Sequence[int], balanced: bool = False) -> None:
        super().__init__()
        self.llava = llava
        self.balanced = balanced
        self.classes = tuple(int(c) for c in classes)
        config = llava.config
        self.layer = int(config.vision_feature_layer)
        self.head = nn.Linear(config.vision_config.hidden_size, sum(self.classes))
        self._features: torch.Tensor | None = None
        llava.model.vision_tower.register_forward_hook(self._keep_features)

    def _keep_features(self, module, args, output) -> None:
        hidden = getattr(output, "hidden_states", None)
        self._features = None if hidden is None else hidden[self.layer][:, 1:]  # (N_img, g*g, C_v)

    def forward(self, **kwargs):
        self._features = None
        return self.llava(**kwargs)

    def attribute_loss(self, labels: torch.Tensor) -> torch.Tensor:
        """Mean over channels of the per-patch cross-entropy of the last forward's views.

        Args:
            labels: (N_img, A, g, g) int64 in the order of that forward's ``pixel_values``.
        """
        feats = self._features
        if feats is None:
            raise RuntimeError("attribute_loss: the last forward ran no images")
        n, cells, _ = feats.shape
        g = int(round(cells ** 0.5))
        if labels.shape != (n, len(self.classes), g, g):
            raise ValueError(f"attribute labels: expected {(n, len(self.classes), g, g)}, found {tuple(labels.shape)}")
        logits = self.head(feats.float()).transpose(1, 2).reshape(n, -1, g, g).split(list(self.classes), dim=1)
        return attribute_cross_entropy(logits, labels, balanced=self.balanced)
