"""SynthVStar scenes written in the users' formats, so the synthetic data goes through the readers.

:func:`export_synth` renders ``synth.n`` scenes of ``synth.split`` (the scenes
``training.vqa_data.render_scene`` gives the VQA recipe: same plan, stream and JPEG round trip) and writes::

    OUT/images/scene_00000.jpg ...
    OUT/llava.json       per scene: its question answered with the correct sentence, and the lettered
                         question (options shuffled from (seed, index)) answered with its letter;
                         a ``text`` scene's question is asked without its image (the text-only pass)
    OUT/coco.json        per scene: every object, category "<colour> <shape>" (the name a colour
                         question uses), its outline as the segmentation, and its full
                         "<pattern> <colour> <shape>" name as the grounding ``caption`` of the targets

``seal train vqa --data OUT/llava.json`` / ``seal train vsm --data OUT/coco.json`` then read them
like any user's data. The shipped tiny models' recipes keep their own scene-to-example path (VWM
crops, probes, attribute maps are more than these formats hold), so their training is unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.data.coco import write_coco
from training.data.llava_json import write_llava_json

if TYPE_CHECKING:
    from eval.synth.config import SynthConfig


def export_synth(synth: "SynthConfig", out_dir: str | Path, seed: int = 0, jpeg_quality: int | None = None) -> dict:
    """Write ``synth``'s scenes to ``out_dir`` (see the module docstring); returns the two file paths.

    Args:
        seed: the letter examples' option order is drawn from ``(seed, index)``.
        jpeg_quality: JPEG quality of the images (default ``synth.jpeg_quality``).
    """
    from eval.synth.scene import describe
    from seal.core.errors import ConfigError
    from seal.core.tokens import IMAGE_TOKEN, OPTION_LETTERS
    from seal.vqa.prompts import letter_question
    from training.vqa_data import render_scene

    if synth.split == "test":
        raise ConfigError("synth.split: training data is rendered from 'train' or 'val' scenes, found 'test'")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    conversations, images, annotations, categories = [], [], [], {}
    for i in range(synth.n):
        sample = render_scene(synth, i, jpeg_roundtrip=False)
        name = f"scene_{i:05d}.jpg"
        sample.image.save(out / "images" / name, "JPEG", quality=jpeg_quality or synth.jpeg_quality)
        q = sample.question
        order = np.random.default_rng([seed, i]).permutation(len(q.options))
        shown = {} if sample.tag == "text" else {"image": f"images/{name}"}
        prefix = "" if sample.tag == "text" else IMAGE_TOKEN + "\n"
        for kind, question, reply in (
                ("sentence", q.question, q.options[0]),
                ("letter", letter_question(q.question, [q.short_options[k] for k in order]),
                 OPTION_LETTERS[int(np.argmax(order == 0))])):
            conversations.append({"id": f"{i:05d}-{kind}", **shown, "conversations": [
                {"from": "human", "value": prefix + question}, {"from": "gpt", "value": reply}]})
        images.append({"id": i, "file_name": f"images/{name}", "width": sample.image.width,
                       "height": sample.image.height})
        for obj in sample.objects:
            category = describe(obj.attrs, ("color", "shape"))
            cid = categories.setdefault(category, len(categories) + 1)
            ann = {"id": len(annotations) + 1, "image_id": i, "category_id": cid,
                   "bbox": [float(v) for v in obj.bbox], "iscrowd": 0,
                   "segmentation": [[float(c) for p in obj.polygon for c in p]]}
            if obj.role == "target":
                ann["caption"] = describe(obj.attrs)
            annotations.append(ann)
    llava = write_llava_json(out / "llava.json", conversations)
    coco = write_coco(out / "coco.json", {"images": images, "annotations": annotations,
                                          "categories": [{"id": v, "name": k} for k, v in categories.items()]})
    return {"llava": str(llava), "coco": str(coco)}
