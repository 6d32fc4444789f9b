"""``seal bench synth`` through the real CLI entry point: outputs, run record, flags, errors."""

import json

import pytest
import yaml

from seal.cli.main import main


def _run(capsys, *argv):
    code = main(["bench", "synth", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_writes_benchmark_and_run_record(tmp_path, capsys):
    out = tmp_path / "bench"
    code, stdout, err = _run(capsys, "--out", str(out), "--n", "5", "--seed", "9", "--split", "val",
                             "--long-side", "500")
    assert code == 0, err
    lines = stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wrote 5 SynthVStar val samples (direct_attributes 3, "
                                                   "relative_position 2)")
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["synth"]["n"] == 5 and cfg["synth"]["seed"] == 9 and cfg["synth"]["long_side"] == 500
    assert cfg["synth"]["split"] == "val" and "search" in cfg  # the whole resolved config
    run = json.loads((out / "run.json").read_text())
    assert run["git_revision"] and isinstance(run["command"], list)
    questions = (out / "test_questions.jsonl").read_text().splitlines()
    assert [json.loads(q)["image"] for q in questions][0] == "direct_attributes/synth_val_00000.jpg"
    assert len(list(out.glob("*/synth_val_*.jpg"))) == 5
    assert len(list((out / "synth_annotations").glob("*/synth_val_*.json"))) == 5


def test_cli_is_deterministic_and_flags_beat_config_files(tmp_path, capsys):
    recipe = tmp_path / "synth.yaml"
    recipe.write_text("synth:\n  n: 7\n  seed: 1\n  long_side: 400\n  suite: mixed\n")
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(capsys, "--out", str(a), "--config", str(recipe), "--n", "3")[0] == 0
    assert _run(capsys, "--out", str(b), "--config", str(recipe), "--synth.n=3")[0] == 0
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "run.json")
    assert len([f for f in files if f.suffix == ".jpg"]) == 3  # --n 3 beat the file's n: 7
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert json.loads((a / "categories.json").read_text())["categories"] != ["direct_attributes", "relative_position"]


@pytest.mark.parametrize("argv, needle", [
    (["--n", "0"], "synth.n"),
    (["--synth.n=0"], "synth.n"),
    (["--long-side", "100"], "synth.long_side"),
    (["--synth.bogus=1"], "synth.bogus"),
    (["--n", "3", "--synth.n=2"], "conflicts"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, needle):
    code, stdout, err = _run(capsys, "--out", str(tmp_path / "x"), *argv)
    assert code == 2 and stdout == ""
    assert len(err.strip().splitlines()) == 1 and needle in err
    assert not (tmp_path / "x").exists()


def test_bad_out_exits_2(tmp_path, capsys):
    a_file = tmp_path / "file.jpg"
    a_file.write_bytes(b"not a folder")
    code, _, err = _run(capsys, "--out", str(a_file), "--n", "1")
    assert code == 2 and "existing file" in err and len(err.strip().splitlines()) == 1
    assert a_file.read_bytes() == b"not a folder"

    out = tmp_path / "bench"
    assert _run(capsys, "--out", str(out), "--n", "3", "--long-side", "300")[0] == 0
    code, _, err = _run(capsys, "--out", str(out), "--n", "1", "--long-side", "300")
    assert code == 2 and "--overwrite" in err
    assert len((out / "test_questions.jsonl").read_text().splitlines()) == 3  # untouched
    assert _run(capsys, "--out", str(out), "--n", "1", "--long-side", "300", "--overwrite")[0] == 0
    assert len((out / "test_questions.jsonl").read_text().splitlines()) == 1
    assert sorted(p.name for p in out.rglob("*.jpg")) == ["synth_test_00000.jpg"]
