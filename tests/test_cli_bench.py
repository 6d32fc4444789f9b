"""``seal bench synth|search|vsm|vqa`` through the real CLI entry point: outputs, run records, flags, errors."""

import json
from pathlib import Path

import pytest
import yaml

from seal.cli.main import main
from tests.cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = {"vstar", "bfs", "dfs", "random-bfs", "random-dfs"}


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
    assert cfg["synth"]["split"] == "val" and list(cfg) == ["synth"]  # the command's resolved config
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


# --------------------------------------------------------------------------- seal bench search / vsm / vqa
@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A small SynthVStar test split written by ``seal bench synth`` (5 images)."""
    out = tmp_path_factory.mktemp("bench") / "synth"
    assert main(["bench", "synth", "--out", str(out), "--n", "5", "--seed", "3"]) == 0
    return out


def test_bench_search_reports_every_strategy_with_the_oracle(bench, tmp_path, capsys):
    out = tmp_path / "report" / "bench.json"
    code, stdout, err = run_cli(["bench", "search", "--bench", bench, "--n-targets", "4", "--out", out], capsys)
    assert code == 0, err
    assert "random-dfs" in stdout and f"report written to {out}" in stdout
    report = json.loads(out.read_text())
    assert report["n_targets"] == 4 and set(report["strategies"]) == STRATEGIES
    assert len(report["rows"]) == 4 * 5 and {r["strategy"] for r in report["rows"]} == STRATEGIES
    vstar, bfs = report["strategies"]["vstar"], report["strategies"]["bfs"]
    assert vstar["found_rate"] == 1.0 and vstar["mean_nodes_all"] >= 1 and vstar["engine_ms_per_node"] > 0
    assert bfs["mean_nodes_all"] > vstar["mean_nodes_all"]  # the oracle's cues lead V* to the targets
    assert all(r["hit"] == (r["found"] and r["iou"] >= 0.5) for r in report["rows"])
    assert json.loads((out.parent / "run.json").read_text())["command"][:3] == ["seal", "bench", "search"]
    cfg = yaml.safe_load((out.parent / "config.yaml").read_text())
    assert set(cfg) >= {"search", "oracle", "image"} and "agent" not in cfg  # seal search's config


def test_bench_search_strategies_and_overrides(bench, tmp_path, capsys):
    out = tmp_path / "r.json"
    code, _, err = run_cli(["bench", "search", "--bench", bench, "--n-targets", "2", "--strategies", "vstar,bfs",
                            "--search.max_nodes=2", "--out", out], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert set(report["strategies"]) == {"vstar", "bfs"}
    assert all(r["nodes_visited"] <= 2 for r in report["rows"])
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["search"]["max_nodes"] == 2


def test_bench_search_big_image_runs_seal_search_in_a_subprocess(tmp_path, capsys):
    out = tmp_path / "big.json"
    code, stdout, err = run_cli(["bench", "search", "--big", "--big-side", "2048", "--out", out], capsys)
    assert code == 0, err
    big = json.loads(out.read_text())["big"]
    assert big["side"] == 2048 and big["image_uint8_mb"] == 2048 * 2048 * 3 / 2**20
    assert big["found"] is True and len(big["results"]) == 3  # the three drawn targets, by the oracle
    assert big["child_peak_rss_mb"] > 0 and "search subprocess peak RSS" in stdout


@pytest.mark.parametrize("argv, needle", [
    ([], "--bench DIR is required"),
    (["--bench", "BENCH", "--strategies", "vstar,sideways"], "--strategies"),
    (["--bench", "BENCH", "--search.bogus=1"], "search.bogus"),
    (["--bench", "NOWHERE"], "NOWHERE"),
])
def test_bench_search_bad_input_exits_2_with_one_line(bench, tmp_path, capsys, argv, needle):
    argv = [str(bench) if a == "BENCH" else str(tmp_path / "nowhere") if a == "NOWHERE" else a for a in argv]
    code, stdout, err = run_cli(["bench", "search", *argv, "--out", tmp_path / "r.json"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle.replace("NOWHERE", "nowhere") in err
    assert not (tmp_path / "r.json").exists()


def test_bench_vsm_with_the_shipped_search_model(bench, tmp_path, capsys):
    out = tmp_path / "vsm.json"
    code, stdout, err = run_cli(["bench", "vsm", "--bench", bench, "--n-targets", "2", "--timing-calls", "1",
                                 "--strategies", "vstar", "--no-patch-calibration", "--out", out], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["command"][:3] == ["seal", "bench", "vsm"] and report["model"] == "checkpoints/vsm_tiny"
    assert report["hit_check"] == "crop"  # the shipped search model checks its hits with its crop matcher
    assert report["search_profile"]["confidence_high"] == report["stops"]["confidence_high"]  # the model's defaults
    assert report["n_targets"] == 2 and len(report["rows"]) == 2 and set(report["search"]) == {"vstar"}
    m = report["search"]["vstar"]
    assert 0.0 <= m["found_rate"] <= 1.0 and m["mean_nodes_all"] >= 1 and m["mean_hit_check_calls"] >= 0
    assert report["vstar_bfs_node_ratio"] is None and report["locate_batch4_median_s"] > 0
    assert "hits checked by crop" in stdout and f"report written to {out}" in stdout


def test_bench_vsm_without_the_hit_check_and_bad_input(bench, tmp_path, capsys):
    out = tmp_path / "plain.json"
    code, _, err = run_cli(["bench", "vsm", "--bench", bench, "--n-targets", "1", "--timing-calls", "1",
                            "--strategies", "vstar", "--no-patch-calibration", "--hit_check.enabled=false",
                            "--search.confidence_high=0.4", "--out", out], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["hit_check"] is None and report["rows"][0]["hit_check_calls"] == 0
    assert report["stops"]["confidence_high"] == 0.4  # an override beats the model's search defaults
    for argv, needle in ((["--strategies", "bfs"], "--strategies"), (["--model", str(tmp_path / "none")], "none"),
                         (["--out", str(bench / "categories.json" / "x.json")], "--out")):
        code, stdout, err = run_cli(["bench", "vsm", "--bench", bench, *argv], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err


def test_bench_vqa_with_the_shipped_vqa_model(tmp_path, capsys):
    data, out = tmp_path / "mixed", tmp_path / "vqa.json"
    code, stdout, err = run_cli(["bench", "vqa", "--data", data, "--n", "3", "--limit", "2", "--out", out], capsys)
    assert code == 0, err
    assert (data / "test_questions.jsonl").is_file()  # generated: a mixed-suite test split
    report = json.loads(out.read_text())
    assert report["samples"] == 2 and report["rates"]["overall"]["n"] == 2
    assert report["command"][:3] == ["seal", "bench", "vqa"] and report["model"] == "checkpoints/vqa_tiny"
    assert set(report["passed"]) == {"crops_likelihood", "search_refusal", "answerable_refusal"}
    assert report["all_passed"] == all(report["passed"].values())
    assert "targets passed" in stdout and f"metrics written to {out}" in stdout
    for argv, needle in ((["--model", str(tmp_path / "none")], "none"), (["--vwm.crop_scale=2"], "no config")):
        code, _, err = run_cli(["bench", "vqa", "--data", data, *argv], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err

