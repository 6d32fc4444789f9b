"""Users' training data: one reader per format, one loader per model.

- VQA LLM: LLaVA-format conversation JSON (:mod:`training.data.llava_json`) and V*Bench folders or
  ``test_questions.jsonl`` (:mod:`training.data.vstar`) -> :class:`training.data.records.Conversation`
  -> tokenised examples (:mod:`training.data.vqa_examples`, through the one prompt path).
- Search model: COCO-format detection / grounding JSON (:mod:`training.data.coco`) and V*Bench
  folders -> :class:`training.data.records.DetectionImage` -> patches and rows with absent-target
  negatives (:mod:`training.data.vsm_rows`).

:mod:`training.data.export_synth` writes SynthVStar scenes in these formats.
"""
