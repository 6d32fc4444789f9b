"""Shared builders of the agent tests (no tests here): a tiny VQA LLM that has learned the refusal,
a scene image with its V*Bench annotation, and agents over them."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PIL import Image

from seal.models.backbone import TinyBackboneConfig, build_tiny_llava
from seal.models.tokenizer import train_tokenizer
from seal.vqa import format_refusal
from vwm.layout import VisualWorkingMemory, VWMConfig

QUESTION = "What is the color of the striped star?"
OPTIONS = ["The color of the striped star is red.", "The color of the striped star is blue."]
TARGETS = ["striped star", "dotted square"]
REFUSAL = format_refusal(TARGETS)
FOUND_ANSWER = "The color of the striped star is red."
OTHER_QUESTION = "Is the blue circle on the left or right side?"
OTHER_ANSWER = "left"
STAR_XYWH = [300, 200, 20, 20]
SQUARE_XYWH = [40, 260, 24, 24]
IMAGE_SIZE = (480, 360)

CORPUS = [QUESTION, OTHER_QUESTION, REFUSAL, FOUND_ANSWER, *OPTIONS, OTHER_ANSWER,
          "Additional visual information to focus on: at not found [0.1, 0.2]"] * 4
BACKBONE = dict(text_hidden=48, text_layers=2, text_heads=2, text_intermediate=96, max_positions=512,
                image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2,
                vision_intermediate=64)
VWM = dict(crop_side_px=32, view_side_px=64)


def scene():
    img = Image.new("RGB", IMAGE_SIZE, (110, 110, 110))
    x, y, w, h = STAR_XYWH
    img.paste((220, 30, 30), (x, y, x + w, y + h))
    x, y, w, h = SQUARE_XYWH
    img.paste((30, 30, 220), (x, y, x + w, y + h))
    return img


def write_scene(tmp_path, name="scene"):
    """``(image_path, annotation_path)``: the scene as PNG and its V*Bench JSON (both targets)."""
    image_path = tmp_path / f"{name}.png"
    scene().save(image_path)
    ann = {"image": image_path.name, "question": QUESTION, "options": OPTIONS,
           "target_object": TARGETS, "bbox": [STAR_XYWH, SQUARE_XYWH]}
    ann_path = tmp_path / f"{name}.json"
    ann_path.write_text(json.dumps(ann))
    return image_path, ann_path


def trained_vqa(steps=120, seed=0):
    """A tiny VQA model trained (a few CPU seconds) to refuse on the global view of ``QUESTION``,
    to answer it with the VWM, and to answer ``OTHER_QUESTION`` on the global view."""
    import torch

    from seal.vqa import VQAModel, build_training_example, collate

    torch.manual_seed(seed)
    tokenizer = train_tokenizer(CORPUS, vocab_size=400)
    model, processor = build_tiny_llava(TinyBackboneConfig(**BACKBONE, seed=seed), tokenizer)
    vcfg = VWMConfig(**VWM)
    image = scene()
    memory = VisualWorkingMemory(image, config=vcfg)
    memory.add_target("striped star", (300, 200, 320, 220), 0.9)
    memory.add_target("dotted square", None)
    examples = [build_training_example(processor, QUESTION, REFUSAL, VisualWorkingMemory(image, config=vcfg)),
                build_training_example(processor, QUESTION, FOUND_ANSWER, memory),
                build_training_example(processor, OTHER_QUESTION, OTHER_ANSWER,
                                       VisualWorkingMemory(image, config=vcfg))]
    batch = collate(examples, tokenizer.pad_token_id)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        out = model(**batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
    return VQAModel(model, processor, vcfg)


def make_config(*overrides):
    from seal.config import load

    base = ["models.localizer=oracle", "policy.baseline_name=always_full", "search.max_nodes=12",
            f"vwm.crop_side_px={VWM['crop_side_px']}", f"vwm.view_side_px={VWM['view_side_px']}"]
    return load([], base + list(overrides))


def make_agent(vqa, *overrides):
    from seal.agent.pipeline import Agent, load_policy

    cfg = make_config(*overrides)
    return Agent(vqa, load_policy(cfg.policy), cfg)
