"""The value-of-vision (VoVNet) policy: decide NO / COARSE / FULL vision from the text-only pass.

- :mod:`seal.policy.config`: ``PolicyConfig`` (who decides: the head's checkpoint, baselines, fallback,
  escalation) and ``HeadConfig`` (the head's own model settings; its training is ``training.policy_recipe``).
- :mod:`seal.policy.actions`: ``Action`` and the binary / ternary action spaces.
- :mod:`seal.policy.features`: feature vector and ``PolicyInputs`` from a ``TextPassOutput``.
- :mod:`seal.policy.head`: ``VoWHead`` (MLP -> action logits; safetensors save/load).
- :mod:`seal.policy.cost`: ``CostModel`` from measured vision tokens.
- :mod:`seal.policy.baselines`: fixed policies behind the ``Chooser`` interface.
- :mod:`seal.policy.fallback`: escalation of unsure NO_VISION decisions.
- :mod:`seal.policy.policy`: ``ValuePolicy.decide(text_pass) -> Decision``.
- :mod:`seal.policy.data`: the precomputed ``.npz`` data the head is trained on.
- :mod:`seal.policy.calibration` / :mod:`~seal.policy.metrics`: ECE and offline policy metrics.

Importing this package does not import torch; ``head`` does.
"""

from seal.policy.actions import ALL_ACTIONS, Action, space_actions
from seal.policy.config import PolicyConfig

__all__ = ["ALL_ACTIONS", "Action", "PolicyConfig", "space_actions"]
