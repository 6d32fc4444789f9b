"""The V* search model (VSM): a LLaVA backbone + LoRA + ``<LOC>``, a SAM-style heatmap decoder
and a DETR-style box decoder, and the predictor that serves it as a ``Localizer``.

One component per module: :mod:`~search.vsm.config`, :mod:`~search.vsm.prompts`,
:mod:`~search.vsm.heatmap_decoder`, :mod:`~search.vsm.box_decoder`, :mod:`~search.vsm.model`,
:mod:`~search.vsm.losses`, :mod:`~search.vsm.targets`, :mod:`~search.vsm.predictor`,
:mod:`~search.vsm.localizer` (``load_vsm_localizer``). Importing this package imports no torch.
"""
