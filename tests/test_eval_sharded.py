"""``seal eval``'s run lock and sharded evaluation through the real CLI (fixtures of test_eval_cli: a tiny
SynthVStar folder, a tiny random VQA model, the oracle localizer): a second run into a locked folder is
refused, a stale lock is taken over, 2 processes give exactly the predictions of 1, a killed rank resumes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from eval.results import PREDICTIONS_FILE
from eval.run_lock import LOCK_FILE, RunLock
from eval.sharded import Rank, rank_file, rank_from_env
from seal.core.errors import InputError
from tests.test_eval_cli import _eval, _predictions, _rows, bench, vqa_dir  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]
TIMING = ("seconds", "stage_seconds", "peak_rss_mb")
TIMING_COLUMNS = ("latency", "latency_p50", "latency_p95", "mem")


def _answers(out):
    return [{k: v for k, v in p.items() if k not in TIMING} for p in _predictions(out)]


def _row(out):
    (row,) = _rows(out)
    return {k: v for k, v in row.items() if k not in TIMING_COLUMNS}


@pytest.fixture(scope="module")
def single(bench, vqa_dir, tmp_path_factory):  # noqa: F811
    """One process, always_full (the oracle search runs): the reference predictions."""
    out = tmp_path_factory.mktemp("single")
    assert _eval(bench, vqa_dir, out, "--policy.baseline_name=always_full") == 0
    return out


def test_second_run_into_a_locked_folder_is_refused(bench, vqa_dir, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    with RunLock(out):  # another run (another open file description: flock conflicts even in-process)
        assert _eval(bench, vqa_dir, out, "--policy.baseline_name=no_vision") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(out) in err[0] and f"pid {os.getpid()}" in err[0] and socket.gethostname() in err[0]
    assert not (out / PREDICTIONS_FILE).exists()
    assert (out / LOCK_FILE).read_text() == ""  # released: the record is cleared, the file stays


def test_stale_lock_of_a_killed_run_is_taken_over(bench, vqa_dir, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from eval.run_lock import RunLock; RunLock({str(out)!r}).acquire(); "
                               "print('locked', flush=True); import time; time.sleep(120)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(InputError, match=f"pid {holder.pid}"):
        RunLock(out).acquire()  # held while it lives
    holder.kill()  # kill -9: no clean-up, the record stays
    holder.wait()
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == holder.pid
    assert _eval(bench, vqa_dir, out, "--policy.baseline_name=no_vision", "--limit", "1") == 0
    err = capsys.readouterr().err
    assert "taking over a stale lock" in err and f"pid {holder.pid}" in err
    assert len(_predictions(out)) == 1 and (out / LOCK_FILE).read_text() == ""


def test_two_processes_give_the_single_process_predictions(bench, vqa_dir, single, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    assert _eval(bench, vqa_dir, out, "--policy.baseline_name=always_full", "--num-processes", "2") == 0
    assert _answers(out) == _answers(single)  # same records, same (question) order
    assert _row(out) == _row(single)
    assert not list(out.glob("predictions.rank*.jsonl"))  # merged and cleaned up


def test_killed_rank_resumes_without_loss_or_duplicates(bench, vqa_dir, single, tmp_path):  # noqa: F811
    reference = _predictions(single)
    assert len(reference) == 3
    out = tmp_path / "out"
    out.mkdir()
    first = reference[0]  # rank 0's first question, answered before the kill ...
    rank_file(out, 0).write_text(json.dumps(first) + "\n" + '{"run_id": "torn')  # ... killed mid-write
    rank_file(out, 1).write_text(json.dumps(first) + "\n")  # the same answer twice: de-duplicated
    assert _eval(bench, vqa_dir, out, "--policy.baseline_name=always_full", "--num-processes", "2") == 0
    preds = _predictions(out)
    assert _answers(out) == _answers(single)
    assert preds[0]["seconds"] == first["seconds"]  # kept, not asked again
    assert _row(out) == _row(single)


def test_conflicting_answers_are_refused(bench, vqa_dir, single, tmp_path, capsys):  # noqa: F811
    reference = _predictions(single)
    out = tmp_path / "out"
    out.mkdir()
    wrong = dict(reference[1], answer_index=1 - reference[1]["answer_index"], answer="something else")
    rank_file(out, 0).write_text(json.dumps(reference[1]) + "\n")
    rank_file(out, 1).write_text(json.dumps(wrong) + "\n")
    assert _eval(bench, vqa_dir, out, "--policy.baseline_name=always_full", "--num-processes", "2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "answered twice" in err[0] and reference[1]["question_id"] in err[0]


def test_a_policy_drawing_in_question_order_is_not_sharded(bench, vqa_dir, tmp_path, capsys):  # noqa: F811
    assert _eval(bench, vqa_dir, tmp_path / "out", "--policy.baseline_name=random_policy_matched",
                 "--policy.baseline_target_ratios=[0.4,0.2,0.4]", "--num-processes", "2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "random_policy_matched" in err[0] and "one process" in err[0]


def test_rank_from_the_launcher_environment():
    assert rank_from_env({}) is None and rank_from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert rank_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == Rank(3, 4, 1)
    with pytest.raises(InputError, match="RANK"):
        rank_from_env({"WORLD_SIZE": "2", "RANK": "2"})
    one_each = [SimpleNamespace(image=f"{i}.jpg", question_id=str(i)) for i in range(7)]
    assert [s.question_id for s in Rank(1, 3).share(one_each)] == ["1", "4"]  # index % 3 == 1
    rotations = [SimpleNamespace(image=image, question_id=f"{image}{k}") for image in "abc" for k in range(2)]
    assert [s.question_id for s in Rank(1, 2).share(rotations)] == ["b0", "b1"]  # one image, one rank


@pytest.mark.slow
def test_accelerate_launch_ranks_give_the_single_process_predictions(bench, vqa_dir, single, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",  # gloo on CPU
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "seal", "eval", "--dataset", "synth",
           "--path", str(bench), "--output-dir", str(out), "--no-progress", f"--models.vqa_path={vqa_dir}",
           "--models.localizer=oracle", "--agent.max_new_tokens=4", "--policy.baseline_name=always_full"]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    ours = [line for line in proc.stderr.splitlines() if "seal eval" in line]  # the ranks' own error lines
    assert proc.returncode == 0, ours or proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["n"] == 3  # rank 0 alone reports
    assert _answers(out) == _answers(single) and _row(out) == _row(single)
