"""Bad and odd images, through :mod:`seal.core.image_io` and through ``seal search``."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from seal.core.geometry import iou_xyxy, xywh_to_xyxy
from seal.core.errors import InputError
from seal.core.image_io import image_size, load_image
from tests.test_cli_search import ROOT, last_json, run_cli


def _jpeg_bytes(size=(200, 150)):
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 100, 50)).save(buf, format="JPEG")
    return buf.getvalue()


def _bad_unreadable(p):
    p.write_bytes(_jpeg_bytes())
    p.chmod(0)
    if os.access(p, os.R_OK):
        pytest.skip("running as root: permissions do not make a file unreadable")


BAD = {
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(_jpeg_bytes()[:400]),
    "corrupt": lambda p: p.write_bytes(_jpeg_bytes()[:200] + np.random.default_rng(0).bytes(3000)),
    "text": lambda p: p.write_text("this is not an image\n"),
    "directory": lambda p: p.mkdir(),
    "missing": lambda p: None,
    "unreadable": _bad_unreadable,
}


@pytest.fixture
def annotation(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"target_object": ["thing"], "bbox": [[10, 10, 20, 20]]}))
    return path


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_image_through_image_io(tmp_path, kind):
    path = tmp_path / f"{kind}.jpg"
    BAD[kind](path)
    with pytest.raises(InputError) as err:
        load_image(path)
    assert str(path) in str(err.value) and len(str(err.value).splitlines()) == 1


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_image_through_cli(tmp_path, kind, annotation, capsys):
    path = tmp_path / f"{kind}.jpg"
    BAD[kind](path)
    rc, out, err = run_cli(["search", "--localizer", "oracle", "--image", path, "--annotation", annotation, "--json"],
                           capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in err
    assert lines[0].startswith("seal search: error:")


def test_decompression_bomb(tmp_path, annotation, capsys):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (100, 100)).save(path)
    with pytest.raises(InputError, match="above the limit of 1000"):
        image_size(path, max_pixels=1000)
    rc, _, err = run_cli(["search", "--localizer", "oracle", "--image", path, "--annotation", annotation,
                          "--image.max_pixels=1000"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "decompression bomb" in err and str(path) in err


def test_truncated_jpeg_in_a_subprocess_has_no_traceback(tmp_path, annotation):
    path = tmp_path / "cut.jpg"
    BAD["truncated"](path)
    proc = subprocess.run([sys.executable, "-m", "seal", "search", "--localizer", "oracle", "--image", str(path),
                           "--annotation", str(annotation)], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and str(path) in proc.stderr


# ---------------------------------------------------------------- odd but valid images
TARGET = [120, 90, 60, 60]  # x, y, w, h in the upright frame


def _scene_rgb(w=400, h=300, box=TARGET):
    img = Image.new("RGB", (w, h), (120, 120, 120))
    x, y, bw, bh = box
    ImageDraw.Draw(img).rectangle([x, y, x + bw - 1, y + bh - 1], fill=(230, 20, 20))
    return img


def _odd_16bit(p):
    arr = np.full((300, 400), 20000, dtype=np.uint16)
    arr[90:150, 120:180] = 60000
    Image.fromarray(arr).save(p)
    with Image.open(p) as im:
        assert im.mode == "I;16"


def _odd_cmyk(p):
    _scene_rgb().convert("CMYK").save(p, format="JPEG")
    with Image.open(p) as im:
        assert im.mode == "CMYK"


ODD = {
    "16bit.png": _odd_16bit,
    "cmyk.jpg": _odd_cmyk,
    "palette.png": lambda p: _scene_rgb().convert("P", palette=Image.Palette.ADAPTIVE).save(p),
    "grey.png": lambda p: _scene_rgb().convert("L").save(p),
    "rgba.png": lambda p: _scene_rgb().convert("RGBA").save(p),
}


def _search(image, target_box, capsys, tmp_path, name="thing"):
    ann = tmp_path / "odd.json"
    ann.write_text(json.dumps({"target_object": [name], "bbox": [target_box]}))
    rc, out, err = run_cli(["search", "--localizer", "oracle", "--image", image, "--annotation", ann, "--json",
                            "--quiet"], capsys)
    assert rc == 0, err
    return last_json(out)


@pytest.mark.parametrize("name", sorted(ODD))
def test_odd_images_load_and_search(tmp_path, name, capsys):
    path = tmp_path / name
    ODD[name](path)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (400, 300)
    px = np.asarray(img)
    inside, outside = px[120, 150].astype(int), px[10, 10].astype(int)
    assert np.abs(inside - outside).sum() > 60  # the target survived the conversion
    res = _search(path, TARGET, capsys, tmp_path)
    assert res["found"] and iou_xyxy(res["box_xyxy"], xywh_to_xyxy(TARGET)) >= 0.5
    assert (res["image_width"], res["image_height"]) == (400, 300)


def test_exif_rotated_jpeg_gives_upright_boxes(tmp_path, capsys):
    # upright 600 x 900 (portrait) with the target low down; stored landscape 900 x 600 + orientation 6
    box = [400, 780, 80, 80]
    upright = _scene_rgb(600, 900, box)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    with Image.open(path) as raw:
        assert raw.size == (900, 600)
    assert image_size(path) == (600, 900)
    img = load_image(path)
    assert img.size == (600, 900)
    r, g, b = np.asarray(img)[820, 440].astype(int)
    assert r > 180 and g < 80  # the red target is where the upright annotation says
    res = _search(path, box, capsys, tmp_path)
    assert (res["image_width"], res["image_height"]) == (600, 900)
    assert res["found"] and iou_xyxy(res["box_xyxy"], xywh_to_xyxy(box)) >= 0.5


def test_one_pixel_image(tmp_path, capsys):
    path = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (255, 0, 0)).save(path)
    assert load_image(path).size == (1, 1)
    res = _search(path, [0, 0, 1, 1], capsys, tmp_path)
    assert res["nodes_visited"] >= 1 and res["found"]
    assert iou_xyxy(res["box_xyxy"], [0, 0, 1, 1]) >= 0.5


def test_panorama(tmp_path, capsys):
    box = [4500, 120, 40, 40]  # illegible in the 6000 px root: the search must go down the strips
    path = tmp_path / "pano.jpg"
    _scene_rgb(6000, 300, box).save(path)
    res = _search(path, box, capsys, tmp_path)
    assert res["found"] and iou_xyxy(res["box_xyxy"], xywh_to_xyxy(box)) >= 0.5
    assert res["nodes_visited"] >= 2


def test_a_non_image_after_ultralytics_patched_pil_is_one_line_error(tmp_path):
    """ultralytics replaces PIL's Image.open with one that installs a HEIF plugin on unknown files; in a
    fresh process that imports it first (as training does), a text file is still 'not a recognised
    image format', and nothing is installed."""
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    code = ("import os, ultralytics.utils.patches\n"
            "from seal.core.image_io import load_image\n"
            "from seal.core.errors import InputError\n"
            f"try:\n    load_image({str(bad)!r})\nexcept InputError as e:\n    print('ERR', e)\n")
    env = {**os.environ, "YOLO_AUTOINSTALL": "false", "YOLO_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-1500:]
    assert "ERR" in out.stdout and "not a recognised image format" in out.stdout
