"""research.bench_shared_backbone: the 7B memory estimate's formulas count the tiny model's
parameters exactly and give LLaVA-1.5-7B's numbers."""

import copy

from research.bench_shared_backbone import (LlavaSizes, lora_params, paper_estimate, projector_params, text_params,
                                            vision_params)
from search.vsm.config import VSMConfig
from search.vsm.model import _lora_config
from search.vsm.shared import adapter_parameter_bytes
from tests.test_vsm_fixtures import BACKBONE, HEADS, tiny_backbone


def test_paper_estimate_formulas_count_the_tiny_model_and_give_the_7b_numbers():
    from peft import get_peft_model

    base, processor = tiny_backbone()
    loc_id = processor.tokenizer.convert_tokens_to_ids("<LOC>")
    vqa = get_peft_model(copy.deepcopy(base), _lora_config(VSMConfig(**{**HEADS, "train_loc_token": False}), loc_id))
    b = BACKBONE
    tiny = LlavaSizes(vocab=base.config.text_config.vocab_size, text_hidden=b["text_hidden"],
                      text_layers=b["text_layers"], text_intermediate=b["text_intermediate"],
                      vision_hidden=b["vision_hidden"], vision_layers=b["vision_layers"],
                      vision_intermediate=b["vision_intermediate"], image_size=b["image_size"],
                      patch_size=b["patch_size"])
    assert text_params(tiny) + vision_params(tiny) + projector_params(tiny) == sum(p.numel() for p in base.parameters())
    assert lora_params(tiny, r=HEADS["lora_r"]) * 4 == adapter_parameter_bytes(vqa)
    paper = paper_estimate()
    assert paper["lora_params"] == 2 * 32 * 2 * (4096 * 8)  # ~4.2 M
    assert 13.0 < paper["base_gib"] < 13.5 and 14.0 < paper["base_gb"] < 14.2  # LLaVA-1.5-7B, fp16
    lora = paper["lora"]
    assert 8.0 < lora["vqa_adapter_mb"] < 8.5 and lora["vsm_adapter_mb"] > lora["vqa_adapter_mb"]
    adapters_gb = (lora["vqa_adapter_mb"] + lora["vsm_adapter_mb"]) / 1e3
    assert abs(lora["separate_gb"] - 2 * paper["base_gb"] - adapters_gb) < 1e-9
    assert abs(lora["saved_gb"] - paper["base_gb"]) < 1e-9 and 0.5 < lora["shared_over_separate"] < 0.51
    assert paper["shipped"]["vsm_adapter_mb"] > 600  # full vision tower + projector copies
