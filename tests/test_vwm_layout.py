"""The visual working memory layout and crops (pure PIL / numpy, no model)."""

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from seal.core.errors import ConfigError
from seal.core.crops import PAD_RGB, crop_region_xyxy, extract_crop, letterbox
from vwm.layout import VisualWorkingMemory, VWMConfig, VWMEntry, build_prompt, format_box

RED, GREEN = (220, 20, 20), (20, 200, 20)


def _scene(w=300, h=200):
    """Grey image with a green square at (100, 60)-(120, 80)."""
    img = Image.new("RGB", (w, h), (90, 90, 90))
    img.paste(GREEN, (100, 60, 120, 80))
    return img


def _memory(n_found, n_missing=0, cfg=None):
    vwm = VisualWorkingMemory(_scene(), config=cfg or VWMConfig(crop_side_px=32, view_side_px=48))
    for i in range(n_found):
        vwm.add_target(f"object {i}", (10 + 20 * i, 10, 30 + 20 * i, 40), 0.9)
    for i in range(n_missing):
        vwm.add_target(f"missing {i}", None, 0.1)
    return vwm


@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_images_match_placeholders_for_any_number_of_targets(n):
    text, images = build_prompt("What is the color of object 0?", _memory(n))
    assert text.count("<image>") == len(images)
    assert len(images) == 1 + min(n, VWMConfig().max_crops)
    assert text.startswith("<image>\n") and text.endswith("What is the color of object 0?")
    assert all(img.size[0] == img.size[1] for img in images)
    assert images[0].size == (48, 48)  # the global view first, letterboxed to view_side_px
    assert all(img.size == (32, 32) for img in images[1:])
    assert ("Additional visual information to focus on:" in text) == (n > 0)
    for i in range(n):
        assert f"object {i} at [" in text


def test_layout_order_and_crops_beyond_max_get_location_only():
    vwm = _memory(3, cfg=VWMConfig(max_crops=1, crop_side_px=32, view_side_px=48))
    text, images = build_prompt("Q?", vwm)
    lines = text.split("\n")
    assert lines[:4] == ["<image>", "Additional visual information to focus on:", "<image>",
                         "object 0 at [0.033, 0.050, 0.100, 0.200]"]
    assert lines[4].startswith("object 1 at [") and lines[5].startswith("object 2 at [")
    assert lines[-1] == "Q?"
    assert len(images) == 2 and images[1] is vwm.entries[0].crop
    assert vwm.entries[1].crop is None and vwm.entries[1].found


def test_failed_searches_are_marked_never_injected():
    vwm = _memory(1, n_missing=2)
    text, images = build_prompt("Q?", vwm)
    assert "missing 0: not found" in text and "missing 1: not found" in text
    assert "missing 0 at" not in text
    assert len(images) == 2  # global + the one found target
    assert vwm.entries[1] == VWMEntry(name="missing 0", found=False, box_xyxy=None, score=0.0, crop=None)
    with pytest.raises(ValueError, match="no box"):
        VWMEntry(name="x", found=False, box_xyxy=(0, 0, 1, 1))
    with pytest.raises(ValueError, match="needs box_xyxy"):
        VWMEntry(name="x", found=True)


def test_from_search_results_uses_found_flag():
    results = [SimpleNamespace(target="cup", found=True, box_xyxy=(30, 20, 60, 80), score=0.8),
               SimpleNamespace(target="dog", found=False, box_xyxy=(0, 0, 10, 10), score=0.35)]
    vwm = VisualWorkingMemory.from_search_results(_scene(), results)
    assert [e.found for e in vwm.entries] == [True, False]
    assert vwm.entries[1].box_xyxy is None and vwm.entries[1].crop is None
    text, images = build_prompt("Where?", vwm)
    assert "cup at [0.100, 0.100, 0.200, 0.400]" in text and "dog: not found" in text
    assert len(images) == 2


def test_normalized_coordinates():
    assert format_box((30, 20, 60, 80), 300, 200) == "[0.100, 0.100, 0.200, 0.400]"
    assert format_box((-10, 5, 330, 250), 300, 200) == "[0.000, 0.025, 1.000, 1.000]"  # clipped to [0, 1]
    assert format_box((1, 1, 2, 2), 3, 3, decimals=2) == "[0.33, 0.33, 0.67, 0.67]"


def test_placeholders_in_user_text_cannot_desynchronise_images():
    vwm = VisualWorkingMemory(_scene(), config=VWMConfig(crop_side_px=16, view_side_px=16))
    vwm.add_target("weird <image> name\nwith newline", (10, 10, 20, 20), 0.9)
    text, images = build_prompt("What is <image> this?\n(A) yes", vwm)
    assert text.count("<image>") == len(images) == 2
    assert "weird image name with newline at [" in text
    assert text.endswith("What is image this?\n(A) yes")  # question lines are kept
    assert build_prompt("Only text <image>?", None) == ("Only text image?", [])


def test_tiny_box_gets_min_context():
    region = crop_region_xyxy((100, 100, 104, 104), 500, 500, scale=2.0, min_side=64)
    assert region == (70, 70, 134, 134)
    region = crop_region_xyxy((100, 100, 200, 150), 500, 500, scale=2.0, min_side=64)
    assert region == (50, 25, 250, 225)  # side = 2 x the longer side, centred on the box


def test_crop_region_shifts_inside_and_clips_to_image():
    assert crop_region_xyxy((0, 0, 10, 10), 500, 500, 2.0, 64) == (0, 0, 64, 64)
    assert crop_region_xyxy((490, 480, 500, 500), 500, 500, 2.0, 64) == (436, 436, 500, 500)
    assert crop_region_xyxy((10, 10, 390, 90), 400, 100, 2.0, 64) == (0, 0, 400, 100)


def test_crop_padding_keeps_aspect():
    img = Image.new("RGB", (400, 100), RED)
    crop = extract_crop(img, (10, 10, 390, 90), scale=2.0, min_side=64, out_side=100)
    arr = np.asarray(crop.image)
    assert crop.image.size == (100, 100)
    assert tuple(arr[0, 50]) == PAD_RGB and tuple(arr[99, 50]) == PAD_RGB  # letterbox bars
    content_rows = np.where((arr[:, 50] == RED).all(axis=1))[0]
    assert 23 <= len(content_rows) <= 26  # 400x100 -> 100x25: the aspect is kept, not stretched
    assert abs(content_rows.mean() - 49.5) < 1.0  # centred
    assert crop.frame.full_to_input_xyxy((0, 0, 400, 100)).round(3).tolist() == [0.0, 37.5, 100.0, 62.5]


def test_crop_shows_the_object_at_its_centre():
    crop = extract_crop(_scene(), (100, 60, 120, 80), scale=2.0, min_side=8, out_side=40)
    arr = np.asarray(crop.image)
    assert crop.region_xyxy == (90, 50, 130, 90)
    assert tuple(arr[20, 20]) == GREEN and tuple(arr[2, 2]) == (90, 90, 90)


def test_letterbox_global_view():
    view, frame = letterbox(Image.new("RGB", (60, 30), RED), 90)
    arr = np.asarray(view)
    assert view.size == (90, 90)
    assert tuple(arr[45, 0]) == RED and tuple(arr[5, 45]) == PAD_RGB
    assert frame.scale_xy == (1.5, 1.5) and frame.pad_xy == (0.0, 22.5)


def test_config_validation():
    with pytest.raises(ConfigError, match="vwm.crop_scale"):
        VWMConfig(crop_scale=0.5)
    with pytest.raises(ConfigError, match="vwm.max_crops"):
        VWMConfig(max_crops=-1)
    with pytest.raises(ConfigError, match="vwm.min_context_px"):
        VWMConfig(min_context_px=0)


def test_entries_record_the_region_their_crop_shows():
    img = Image.new("RGB", (800, 600), (10, 20, 30))
    vwm = VisualWorkingMemory(global_image=img, config=VWMConfig(max_crops=1))
    first = vwm.add_target("a", (100, 100, 140, 130))
    second = vwm.add_target("b", (500, 300, 560, 380))  # past max_crops: location only
    cfg = vwm.config
    assert first.crop_region_xyxy == tuple(float(v) for v in crop_region_xyxy(
        (100, 100, 140, 130), 800, 600, cfg.crop_scale, cfg.min_context_px))
    assert second.crop is None and second.crop_region_xyxy is None


def test_relation_lines_follow_the_boxes_in_entry_order_and_skip_missing_targets():
    vwm = VisualWorkingMemory(_scene(), config=VWMConfig(crop_side_px=32, view_side_px=48))
    vwm.add_target("red star", (200, 20, 220, 40), 0.9)  # right of and above the ring
    vwm.add_target("gone", None, 0.0)
    vwm.add_target("blue ring", (10, 150, 30, 170), 0.9)
    text, _ = build_prompt("Is the red star on the left or right side of the blue ring?", vwm)
    lines = text.split("\n")
    assert lines[-2] == "red star is right of and above blue ring"
    assert sum("is left of" in ln or "is right of" in ln for ln in lines) == 1  # the missing one has none
    off = VisualWorkingMemory(_scene(), config=VWMConfig(crop_side_px=32, view_side_px=48, relations=False))
    off.add_target("red star", (200, 20, 220, 40), 0.9)
    off.add_target("blue ring", (10, 150, 30, 170), 0.9)
    assert " of and " not in build_prompt("q?", off)[0]


def test_relation_lines_are_capped():
    cfg = VWMConfig(crop_side_px=32, view_side_px=48, max_relations=2)
    text, _ = build_prompt("q?", _memory(4, cfg=cfg))
    assert text.count(" of and ") == 2 and "object 0 is left of and above object 1" in text
    with pytest.raises(ConfigError, match="max_relations"):
        VWMConfig(max_relations=-1)


def test_shared_global_view_is_the_letterboxed_image_and_checked():
    cfg = VWMConfig(crop_side_px=32, view_side_px=48)
    first = _memory(1, cfg=cfg)
    view = first.view()
    assert first.view() is view  # made once
    assert np.array_equal(np.asarray(view), np.asarray(letterbox(_scene(), 48)[0]))
    shared = VisualWorkingMemory(_scene(), config=cfg, global_view=view)
    shared.add_target("object 0", (10, 10, 30, 40), 0.9)
    assert build_prompt("q", shared)[1][0] is view
    assert [np.asarray(i).tolist() for i in build_prompt("q", shared)[1]] == \
        [np.asarray(i).tolist() for i in build_prompt("q", first)[1]]
    with pytest.raises(ValueError, match="48x48"):
        VisualWorkingMemory(_scene(), config=cfg, global_view=Image.new("RGB", (32, 32)))
