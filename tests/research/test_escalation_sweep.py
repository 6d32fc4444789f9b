"""research.escalation_sweep: replaying the COARSE -> FULL rule over an always_coarse and an always_full run."""

import json

import pytest

from research.escalation_sweep import main, run_records, sweep
from seal.core.errors import InputError


def _write(folder, records):
    folder.mkdir(parents=True)
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def _runs(tmp_path):
    coarse = [  # q1 sure and right, q2 unsure and wrong, q3 unsure and right
        {"question_id": "q1", "tag": "coarse", "correct": True, "option_scores": [-0.2, -1.5], "vision_tokens": 64},
        {"question_id": "q2", "tag": "search", "correct": False, "option_scores": [-1.0, -1.1], "vision_tokens": 64},
        {"question_id": "q3", "tag": "search", "correct": True, "option_scores": [-1.0, -1.3], "vision_tokens": 64},
    ]
    full = [
        {"question_id": "q1", "tag": "coarse", "correct": False, "vision_tokens": 9000},
        {"question_id": "q2", "tag": "search", "correct": True, "vision_tokens": 3000},
        {"question_id": "q3", "tag": "search", "correct": False, "vision_tokens": 3000},
    ]
    return _write(tmp_path / "coarse", coarse), _write(tmp_path / "full", full)


def test_sweep_takes_the_full_answer_below_the_threshold(tmp_path):
    c, f = _runs(tmp_path)
    result = sweep(run_records(c), run_records(f), [0.0, 0.2, 2.0])
    never, mid, always = result["rows"]
    assert never["accuracy"] == pytest.approx(2 / 3) and never["avg_cost"] == 64 and never["escalated"] == 0
    assert mid["escalated"] == pytest.approx(1 / 3) and mid["accuracy"] == 1.0  # only q2 (margin 0.1)
    assert mid["avg_cost"] == pytest.approx(64 + 3000 / 3) and mid["by_tag"] == {"coarse": 1.0, "search": 1.0}
    assert always["accuracy"] == pytest.approx(1 / 3) and always["avg_cost"] == pytest.approx(64 + 5000)
    assert result["always_full"] == {"accuracy": pytest.approx(1 / 3), "avg_cost": 5000}


def test_cli_writes_json_and_rejects_bad_input(tmp_path, capsys):
    c, f = _runs(tmp_path)
    assert main(["--coarse", str(c), "--full", str(f), "--thresholds", "0.2", "--out", str(tmp_path / "s.json")]) == 0
    assert "| 0.2 | 1.000 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "s.json").read_text())["n"] == 3
    assert main(["--coarse", str(tmp_path / "nowhere"), "--full", str(f)]) == 2
    (c / "predictions.jsonl").write_text("{not json\n")
    assert main(["--coarse", str(c), "--full", str(f)]) == 2
    with pytest.raises(InputError, match="no question ids"):
        sweep({"a": {}}, {"b": {}})


def test_only_the_last_run_of_a_folder_is_read_and_the_file_is_left_alone(tmp_path):
    folder = _write(tmp_path / "runs", [
        {"run_id": "old", "question_id": "q1", "correct": False},
        {"run_id": "new", "question_id": "q1", "correct": True},
        {"run_id": "new", "question_id": "q2", "correct": True},
    ])
    path = folder / "predictions.jsonl"
    path.write_text(path.read_text() + '{"run_id": "new", "question_')  # a torn last line
    before = path.read_text()
    records = run_records(folder)
    assert sorted(records) == ["q1", "q2"] and records["q1"]["correct"] is True
    assert path.read_text() == before
