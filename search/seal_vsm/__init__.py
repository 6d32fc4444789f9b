"""The published SEAL visual search model (``craigwu/seal_vsm_7b``) as a ``Localizer`` backend.

- :mod:`search.seal_vsm.heads`: the OWL-ViT detector head and the SAM heatmap decoder on ``[LOC]``;
- :mod:`search.seal_vsm.model`: :class:`~search.seal_vsm.model.SealVSM` (LLaVA + OWL-ViT + heads);
- :mod:`search.seal_vsm.localizer`: the ``seal_vsm`` localizer (:func:`load_seal_vsm_localizer`);
- :mod:`search.seal_vsm.convert`: ``seal convert seal-vsm`` (original checkpoint -> our directory).

Importing this package does not import torch.
"""
