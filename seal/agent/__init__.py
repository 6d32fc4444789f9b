"""The agent: text-first pass -> value-of-vision decision -> NO / COARSE / FULL (+ V* search + VWM).

- :mod:`seal.agent.config`: ``ModelsConfig``, ``AgentConfig`` and ``AskConfig`` (the config of
  ``seal ask`` / ``seal eval``).
- :mod:`seal.agent.views`: ``ImageViews``, one image's cached global views and their token counts.
- :mod:`seal.agent.kv`: the text-only pass with its KV cache kept, and option scoring from it.
- :mod:`seal.agent.events`: the event dicts the pipeline emits.
- :mod:`seal.agent.result`: ``AgentResult``.
- :mod:`seal.agent.pipeline`: ``Agent`` (``from_config``, ``set_image``, ``ask``).

Importing this package does not import torch.
"""
