"""V*Bench reader: folder layout (dotted paths, categories.json, extras, junk, validation) and jsonl."""

import json

import numpy as np
import pytest

from eval.readers.vstar import (PROTOCOL_LETTER, PROTOCOL_LIKELIHOOD, read_categories, read_vstar,
                                read_vstar_folder, read_vstar_jsonl, split_question_text)
from seal.core.errors import InputError
from tests.fixtures_bench import (INSTRUCTION, vstar_question_record, write_vstar_folder, write_vstar_jsonl,
                                  write_vstar_sample)


@pytest.fixture
def bench(tmp_path):
    root = tmp_path / "my.bench" / "v1.0"  # dots in the root: the official split('.') rule breaks here
    return root, write_vstar_folder(root)


def test_folder_reads_default_categories_in_sorted_order(bench):
    root, expected = bench
    samples = read_vstar_folder(root)
    assert [s.question_id for s in samples] == expected["ids"]
    assert [s.category for s in samples] == ["direct_attributes"] * 3 + ["relative_position"] * 2
    dotted = samples[2]
    assert dotted.image == root / "direct_attributes" / "sa_2.v2.jpg" and dotted.image.is_file()
    assert dotted.source == root / "direct_attributes" / "sa_2.v2.json"
    assert dotted.question == "What is the material of the glove?"
    first = samples[0]
    assert first.answer == 0 and first.answer_letter == "A" and first.letters == "ABCD"
    assert first.options[0] == "The color of the cup is red." and first.protocol == PROTOCOL_LIKELIHOOD
    assert first.targets == ("cup",) and first.boxes_xywh == ((10.0, 5.0, 8.0, 6.0),) and first.tag is None
    np.testing.assert_array_equal(first.boxes_xyxy(), [[10, 5, 18, 11]])
    assert len(samples[1].options) == 2  # a 2-option attribute question
    pair = samples[3]
    assert pair.targets == ("steel ladder", "wagon") and pair.boxes_xyxy().shape == (2, 4)


def test_extras_and_junk_are_ignored_and_empty_lists_tolerated(bench):
    root, _ = bench
    samples = read_vstar_folder(root)
    assert {s.category for s in samples} == {"direct_attributes", "relative_position"}
    assert not any("GPT4V" in str(s.image) or "OCR" in str(s.image) for s in samples)
    assert all(s.image.suffix == ".jpg" and not s.image.name.startswith(".") for s in samples)
    empty = samples[-1]
    assert empty.question_id == "relative_position/sa_4" and empty.targets == () and empty.boxes_xywh == ()
    assert empty.boxes_xyxy().shape == (0, 4)


def test_categories_json_declares_the_folders(bench):
    root, _ = bench
    write_vstar_sample(root, "coarse_attributes", "synth_test_00002", ["pink diamond"], [[1, 2, 30, 30]],
                       "What is the pattern of the pink diamond?", ["It is dotted.", "It is solid."], tag="coarse")
    (root / "categories.json").write_text(json.dumps({"categories": ["coarse_attributes", "OCR"]}))
    assert read_categories(root) == ["coarse_attributes", "OCR"]
    samples = read_vstar_folder(root)
    assert [s.question_id for s in samples] == ["coarse_attributes/synth_test_00002", "OCR/ocr_1"]
    assert samples[0].tag == "coarse" and samples[1].tag is None


@pytest.mark.parametrize("content, needle", [
    ('{"categories": []}', "'categories'"),
    ('{"folders": ["a"]}', "'categories'"),
    ('{"categories": ["../up"]}', "plain folder names"),
    ('{"categories": ["direct_attributes", "missing_one"]}', "missing_one"),
    ('{"categories": ', "not valid JSON"),
])
def test_bad_categories_json(bench, content, needle):
    root, _ = bench
    (root / "categories.json").write_text(content)
    with pytest.raises(InputError, match=needle) as err:
        read_vstar_folder(root)
    assert "categories.json" in str(err.value) or "missing_one" in str(err.value)


def test_missing_default_category_folder_is_an_error(tmp_path):
    write_vstar_sample(tmp_path, "direct_attributes", "sa_1", ["cup"], [[1, 1, 2, 2]], "Q?", ["a", "b"])
    with pytest.raises(InputError, match="relative_position"):
        read_vstar_folder(tmp_path)


@pytest.mark.parametrize("data, field", [
    ({"target_object": ["cup"], "bbox": [[1, 2, 3, 4], [5, 6, 7, 8]], "question": "Q?", "options": ["a"]}, "'bbox'"),
    ({"target_object": ["cup"], "bbox": [[1, 2, 3, 4]], "question": "Q?", "options": []}, "'options'"),
    ({"target_object": "cup", "bbox": [[1, 2, 3, 4]], "question": "Q?", "options": ["a"]}, "'target_object'"),
    ({"target_object": ["cup"], "bbox": [[1, 2, 3]], "question": "Q?", "options": ["a"]}, "'bbox[0]'"),
    ({"target_object": ["cup"], "bbox": [[1, 2, "3", 4]], "question": "Q?", "options": ["a"]}, "'bbox[0]'"),
    ({"target_object": ["cup"], "bbox": [[1, 2, 3, 4]], "options": ["a"]}, "'question'"),
    ({"target_object": ["cup"], "bbox": [[1, 2, 3, 4]], "question": "Q?", "options": ["a", 3]}, "'options[1]'"),
    ({"target_object": [""], "bbox": [[1, 2, 3, 4]], "question": "Q?", "options": ["a"]}, "'target_object[0]'"),
    ({"target_object": [], "bbox": [], "question": "Q?", "options": ["a"], "tag": 5}, "'tag'"),
])
def test_malformed_annotation_names_file_and_field(bench, data, field):
    root, _ = bench
    bad = root / "relative_position" / "sa_3.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        read_vstar_folder(root)
    assert str(bad) in str(err.value) and field in str(err.value)


def test_invalid_json_syntax_names_the_file(bench):
    root, _ = bench
    bad = root / "direct_attributes" / "sa_10.json"
    bad.write_text('{"target_object": ["bus"], "bbox": [[1, 2, 3, 4]],')
    with pytest.raises(InputError, match="not valid JSON") as err:
        read_vstar_folder(root)
    assert err.value.path == str(bad)


def test_unpaired_files_are_errors(bench):
    root, _ = bench
    (root / "direct_attributes" / "sa_1.jpg").rename(root / "direct_attributes" / "sa_1.jpeg.bak")
    with pytest.raises(InputError, match="without an image") as err:
        read_vstar_folder(root)
    assert err.value.path.endswith("sa_1.json")
    (root / "direct_attributes" / "sa_1.json").unlink()
    (root / "direct_attributes" / "sa_5.png").write_bytes((root / "direct_attributes" / "sa_10.jpg").read_bytes())
    with pytest.raises(InputError, match="without its annotation sa_5.json"):
        read_vstar_folder(root)


def test_two_images_with_one_stem_are_ambiguous(bench):
    root, _ = bench
    folder = root / "direct_attributes"
    (folder / "sa_1.png").write_bytes((folder / "sa_1.jpg").read_bytes())
    with pytest.raises(InputError, match="two images share the stem 'sa_1'"):
        read_vstar_folder(root)


# ---------------------------------------------------------------------- test_questions.jsonl
def test_jsonl_letter_format(bench):
    root, _ = bench
    path = write_vstar_jsonl(root)
    samples = read_vstar_jsonl(path)
    assert [s.question_id for s in samples] == ["0", "1", "2"]
    cup, bus, ladder = samples
    assert cup.question == "What is the color of the cup?" and cup.options == ("blue", "red", "green", "white")
    assert cup.answer == 1 and cup.answer_letter == "B" and cup.protocol == PROTOCOL_LETTER
    assert bus.options == ("red", "yellow") and bus.answer == 1 and bus.letters == "AB"  # 2-option row
    assert ladder.category == "relative_position" and ladder.options == ("left", "right") and ladder.answer == 0
    assert cup.image == root / "direct_attributes" / "sa_1.jpg" and cup.targets == () and cup.boxes_xywh == ()
    assert all(INSTRUCTION not in s.question and INSTRUCTION not in s.options[-1] for s in samples)
    assert read_vstar(path) == samples  # dispatch on a file


def test_split_question_text_edge_cases():
    text = ("Look at (B) here.\nWhich one?\n(A) one\n(B) two\n(C) three\n(D) 4\n(E) five\n(F) six\n(G) 7\n(H) 8\n"
            + INSTRUCTION)
    question, options = split_question_text(text)
    assert question == "Look at (B) here.\nWhich one?"
    assert options == ["one", "two", "three", "4", "five", "six", "7", "8"]
    assert split_question_text("Q?\n(A) x\n(B) y") == ("Q?", ["x", "y"])  # no trailing instruction
    assert split_question_text("Q?\n(A) x\n(C) y\nmore") == ("Q?", ["x"])  # letters must run in order
    with pytest.raises(ValueError, match=r"\(A\)"):
        split_question_text("Q? A. x B. y")


@pytest.mark.parametrize("record, needle", [
    ({"label": "C"}, "field 'label'"),
    ({"label": "AB"}, "field 'label'"),
    ({"text": "What is it? red or blue"}, "field 'text'"),
    ({"question_id": None}, "field 'question_id'"),
    ({"image": "direct_attributes/nope.jpg"}, "field 'image'"),
    ({"category": 3}, "'category'"),
])
def test_jsonl_bad_lines_name_line_and_field(bench, record, needle):
    root, _ = bench
    good = vstar_question_record("direct_attributes/sa_10.jpg", "Red or yellow?", ["red", "yellow"], "A", "0",
                                 "direct_attributes")
    path = write_vstar_jsonl(root, [good, {**good, "question_id": "1", **record}])
    with pytest.raises(InputError, match=needle) as err:
        read_vstar_jsonl(path)
    assert "line 2" in str(err.value) and err.value.path == str(path)


def test_jsonl_invalid_json_duplicate_ids_and_int_ids(bench):
    root, _ = bench
    rec = vstar_question_record("direct_attributes/sa_1.jpg", "Q?", ["a", "b"], "A", "0", "direct_attributes")
    path = root / "test_questions.jsonl"
    path.write_text(json.dumps(rec) + "\n\n" + '{"image": "x.jpg", "text": \n')
    with pytest.raises(InputError, match="line 3: not valid JSON"):
        read_vstar_jsonl(path)
    path.write_text(json.dumps(rec) + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(InputError, match="line 2: field 'question_id': '0' appears twice"):
        read_vstar_jsonl(path)
    path.write_text(json.dumps({**rec, "question_id": 5}) + "\n")
    assert read_vstar_jsonl(path)[0].question_id == "5"
    assert read_vstar_jsonl(path, image_root=root / "elsewhere", check_images=False)[0].image == \
        root / "elsewhere" / "direct_attributes" / "sa_1.jpg"


def test_missing_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        read_vstar(tmp_path / "absent")


def test_reads_a_generated_synthvstar_benchmark(tmp_path):
    """The reader agrees with the SynthVStar writer: categories.json, tags, boxes and jsonl answers."""
    from eval.synth.config import SynthConfig
    from eval.synth.generate import generate_benchmark

    out = tmp_path / "synth.v1"
    counts = generate_benchmark(SynthConfig(n=6, seed=3, suite="mixed", long_side=300), out)
    samples = read_vstar(out)
    assert len(samples) == 6 and {c: sum(s.category == c for s in samples) for c in counts} == counts
    for s in samples:
        raw = json.loads(s.source.read_text())
        assert s.tag == raw["tag"] and list(s.options) == raw["options"] and s.answer == 0
        assert [list(b) for b in s.boxes_xywh] == raw["bbox"] and len(s.targets) == len(raw["bbox"])
    letters = read_vstar(out / "test_questions.jsonl")
    assert len(letters) == 6
    for s in letters:
        side = json.loads((out / "synth_annotations" / s.image.relative_to(out)).with_suffix(".json").read_text())
        assert s.options[s.answer] == side["answer_short"]
