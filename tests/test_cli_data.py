"""``seal data summary`` through the real CLI entry point: exact counts, human output, input errors."""

import json

import pytest

from seal.cli.main import main
from tests.fixtures_bench import write_hrbench_tsv, write_mmbench_tsv, write_vstar_folder, write_vstar_jsonl


def _run(capsys, *argv):
    code = main(["data", "summary", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _summary(capsys, dataset, path):
    code, out, err = _run(capsys, "--dataset", dataset, "--path", str(path), "--json")
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_vstar_folder_and_jsonl(tmp_path, capsys):
    root = tmp_path / "vstar.bench"
    expected = write_vstar_folder(root)
    jsonl = write_vstar_jsonl(root)
    folder = _summary(capsys, "vstar", root)
    assert folder["n_samples"] == 5 and folder["n_targets"] == expected["n_targets"] == 5
    assert folder["categories"] == {"direct_attributes": 3, "relative_position": 2} and folder["format"] == "folder"
    letters = _summary(capsys, "vstar", jsonl)
    assert letters["n_samples"] == 3 and letters["categories"] == {"direct_attributes": 2, "relative_position": 1}
    assert "n_targets" not in letters and letters["format"] == "jsonl"


def test_mmbench_and_hrbench_counts(tmp_path, capsys):
    write_mmbench_tsv(tmp_path / "MMBench_DEV_EN.tsv", big_image=True)
    write_mmbench_tsv(tmp_path / "MMBench_TEST_EN.tsv", with_answers=False)
    write_hrbench_tsv(tmp_path / "hr_bench_4k.tsv", n_questions=3)
    dev = _summary(capsys, "mmbench", tmp_path / "MMBench_DEV_EN.tsv")
    assert (dev["n_samples"], dev["n_rows"], dev["has_answers"]) == (3, 8, True)
    assert dev["categories"] == {"image_scene": 1, "image_quality": 1, "image_style": 1}
    test = _summary(capsys, "mmbench", tmp_path / "MMBench_TEST_EN.tsv")
    assert (test["n_samples"], test["n_rows"], test["has_answers"]) == (3, 8, False)
    hr = _summary(capsys, "hrbench", tmp_path / "hr_bench_4k.tsv")
    assert (hr["n_samples"], hr["n_rows"], hr["categories"]) == (3, 12, {"single": 2, "cross": 1})


def test_human_readable_output(tmp_path, capsys):
    write_hrbench_tsv(tmp_path / "hr.tsv", n_questions=2)
    code, out, err = _run(capsys, "--dataset", "hrbench", "--path", str(tmp_path / "hr.tsv"))
    assert code == 0 and err == ""
    lines = out.strip().splitlines()
    assert lines[0].startswith("hrbench: 2 questions in 8 rows") and not out.lstrip().startswith("{")
    assert [ln.split() for ln in lines[1:]] == [["single", "1"], ["cross", "1"]]


def _truncated_mmbench(tmp_path):
    path = tmp_path / "mm.tsv"
    write_mmbench_tsv(path, big_image=True)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])  # cut inside the first row's quoted base64 image
    return path


def _truncated_hrbench(tmp_path):
    path = tmp_path / "hr.tsv"
    write_hrbench_tsv(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path


def _broken_vstar(tmp_path):
    root = tmp_path / "v.bench"
    write_vstar_folder(root)
    (root / "relative_position" / "sa_3.json").write_text('{"target_object": ["a"], ')
    return root


def _mmbench_as_hrbench(tmp_path):
    write_mmbench_tsv(tmp_path / "mm.tsv")
    return tmp_path / "mm.tsv"


@pytest.mark.parametrize("dataset, make, needle", [
    ("mmbench", _truncated_mmbench, "mm.tsv: line 2: malformed TSV row"),
    ("hrbench", _truncated_hrbench, "hr.tsv: line"),
    ("hrbench", lambda p: p / "absent.tsv", "absent.tsv: no such file or folder"),
    ("vstar", lambda p: p / "absent", "absent: no such file or folder"),
    ("vstar", _broken_vstar, "sa_3.json: not valid JSON"),
    ("hrbench", _mmbench_as_hrbench, "missing required column(s) 'cycle_category'"),
])
def test_bad_input_exits_2_with_one_stderr_line(tmp_path, capsys, dataset, make, needle):
    code, out, err = _run(capsys, "--dataset", dataset, "--path", str(make(tmp_path)), "--json")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("seal data: error: ")
    assert needle in err and "Traceback" not in err


def test_overrides_are_refused(tmp_path, capsys):
    write_hrbench_tsv(tmp_path / "hr.tsv")
    code, out, err = _run(capsys, "--dataset", "hrbench", "--path", str(tmp_path / "hr.tsv"), "--search.max_nodes=3")
    assert code == 2 and "no config overrides" in err and len(err.strip().splitlines()) == 1
