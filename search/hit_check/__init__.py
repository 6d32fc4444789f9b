"""The hit check: "is this box really the target?", asked before the search trusts a confident box.

A localizer scores hundreds of candidate boxes per patch; its errors are near misses, objects whose
name differs from the target's in one word ("checkered cross" for "dotted cross"). The hit check
looks at one box up close and says how likely it is to show the named target:

- :mod:`search.hit_check.config`: ``HitCheckConfig``, the ``hit_check`` section (every knob).
- :mod:`search.hit_check.protocol`: the ``HitCheck`` protocol, ``HitCheckStats``, ``AllChecks``.
- :mod:`search.hit_check.rules`: which boxes the engine asks about and what the answers mean.
- :mod:`search.hit_check.crop_matcher`: the search model's crop matcher reads the box's crop.
- :mod:`search.hit_check.words`: the VQA LLM reads the target's named words back from a crop.
- :mod:`search.hit_check.build`: ``build_hit_check``, the one builder (agent, ``seal search``,
  ``seal eval``).

Importing this package imports neither torch nor a model.
"""
