"""``seal experiment``: the oracle action, the Pareto front and mean ± std on hand-made rows; then the real
command on a tiny generated suite (tiny random VQA model, oracle localizer, a tiny random policy head)
asserting every file, the derived policies, resuming, and report.html in headless Chromium."""

import csv
import json
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

import numpy as np

from eval.experiment import bucket_overrides, mean_std, oracle_records, pareto_front, policy_row
from seal.core.errors import ConfigError
from seal.policy.baselines import make_baseline
from seal.policy.config import PolicyConfig
from seal.policy.features import PolicyInputs
from seal.cli.main import main
from seal.policy.head import HeadSpec, VoWHead
from tests.test_eval_cli import BACKBONE, bench, vqa_dir  # noqa: F401  (module fixtures)
from tests.test_report_html import CHROMIUM, _chromium


def _rec(qid, action, correct, tokens):
    return {"question_id": qid, "category": "c", "action": action, "correct": correct, "vision_tokens": tokens,
            "seconds": 0.1, "peak_rss_mb": 1.0}


def test_oracle_takes_the_cheapest_right_action():
    right = {  # question -> which forced actions answered right
        "q1": {"no", "coarse", "full"}, "q2": {"coarse", "full"}, "q3": {"full"}, "q4": set(), "q5": {"no", "full"}}
    tokens = {"no": 0, "coarse": 64, "full": 900}
    forced = {a: [_rec(q, a, a in ok, tokens[a]) for q, ok in right.items()] for a in tokens}
    forced["full"] = forced["full"][:-1] + [_rec("q5", "full", True, 50), _rec("extra", "full", True, 50)]
    got = {r["question_id"]: (r["oracle_action"], r["correct"], r["vision_tokens"]) for r in oracle_records(forced)}
    assert got == {"q1": ("no", True, 0), "q2": ("coarse", True, 64), "q3": ("full", True, 900),
                   "q4": ("no", False, 0), "q5": ("no", True, 0)}  # "extra": not in every forced run
    row = policy_row("s", "oracle", oracle_records(forced))
    assert row["accuracy"] == 0.8 and row["mean_vision_tokens"] == (64 + 900) / 5
    assert (row["action_rate_no"], row["action_rate_coarse"], row["action_rate_full"]) == (0.6, 0.2, 0.2)
    with pytest.raises(ValueError, match="missing"):
        oracle_records({"no": forced["no"]})


def test_pareto_front_keeps_the_non_dominated_points():
    pts = {"a": (0.5, 0), "b": (0.7, 100), "c": (0.6, 200), "d": (0.9, 900), "e": (0.9, 1000), "f": (0.4, 0)}
    rows = [{"policy": k, "accuracy": acc, "mean_vision_tokens": t} for k, (acc, t) in pts.items()]
    assert [r["policy"] for r in pareto_front(rows)] == ["a", "b", "d"]


def test_bucket_overrides_match_the_learned_rates_per_entropy_bucket():
    learned = [{"entropy": e, "action": a} for e, a in
               ((0.1, "no"), (0.2, "no"), (0.3, "no"), (1.0, "coarse"), (1.1, "full"), (1.2, "coarse"),
                (2.0, "full"), (2.1, "full"), (2.2, "full"))]
    cuts, ratios = bucket_overrides(learned)
    thresholds = json.loads(cuts.split("=", 1)[1])
    assert len(thresholds) == 2 and 0.3 <= thresholds[0] < 1.0 and 1.2 <= thresholds[1] < 2.0
    assert json.loads(ratios.split("=", 1)[1]) == [[1.0, 0.0, 0.0], [0.0, 2 / 3, 1 / 3], [0.0, 0.0, 1.0]]
    cfg = PolicyConfig(baseline_name="random_bucket_matched", baseline_bucket_thresholds=thresholds,
                       baseline_bucket_ratios=json.loads(ratios.split("=", 1)[1]))
    chooser = make_baseline("random_bucket_matched", cfg, seed=0)
    entropy = np.array([0.0, 0.2, 5.0, 9.0])
    inputs = PolicyInputs(features=np.zeros((4, 2), np.float32), entropy=entropy, margin=np.zeros(4))
    got = chooser.choose(inputs)
    assert list(got.actions) == [0, 0, 2, 2] and got.probs.shape == (4, 3)  # buckets 0 and 2 are certain
    with pytest.raises(ConfigError, match="baseline_bucket_ratios"):
        make_baseline("random_bucket_matched", PolicyConfig(baseline_bucket_thresholds=[1.0],
                                                            baseline_bucket_ratios=[[1, 0, 0]]))


def test_head_names_are_unique_and_say_which_recipe(tmp_path):
    from eval.experiment import head_names

    heads = [tmp_path / "policy_binary" / "export", tmp_path / "policy_lambda0" / "export",
             tmp_path / "checkpoints" / "policy_tiny", tmp_path / "other" / "policy_tiny"]
    assert head_names(heads) == ["policy_binary", "policy_lambda0", "policy_tiny", "policy_tiny_2"]


def test_mean_std_over_seeds():
    rows = [{"suite": "s", "policy": "random_policy_matched", "accuracy": acc, "accuracy_ci_low": acc - 0.1,
             "accuracy_ci_high": acc + 0.1, "mean_vision_tokens": t, "action_rate_no": 0.5, "action_rate_coarse": 0.25,
             "action_rate_full": 0.25, "n": 4} for acc, t in ((0.5, 100.0), (0.75, 200.0), (1.0, 300.0))]
    m = mean_std(rows)
    assert m["accuracy"] == pytest.approx(0.75) and m["accuracy_std"] == pytest.approx(0.25)
    assert m["mean_vision_tokens"] == pytest.approx(200.0) and m["mean_vision_tokens_std"] == pytest.approx(100.0)
    assert m["seeds"] == 3 and m["n"] == 4 and m["accuracy_ci_low"] == pytest.approx(0.65)
    assert mean_std(rows[:1])["accuracy_std"] == 0.0


@pytest.fixture(scope="module")
def head_dir(vqa_dir, tmp_path_factory):  # noqa: F811
    spec = HeadSpec(in_features=BACKBONE["text_hidden"] + 2, hidden_dim=8, action_space="ternary",
                    feature_mode="hidden_entropy_margin")
    return VoWHead(spec).save(tmp_path_factory.mktemp("head"), trained_against={"vqa": vqa_dir})


def _csv(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _preds(folder):
    return [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines() if line.strip()]


def test_experiment_writes_every_file(bench, vqa_dir, head_dir, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "exp"
    argv = ["experiment", "--suite", str(bench), "--out", str(out), "--seeds", "0,1",
            f"--models.vqa_path={vqa_dir}", "--models.localizer=oracle", "--agent.max_new_tokens=4",
            f"--policy.checkpoint={head_dir}", "--search.max_nodes=8", f"--lambda-heads={head_dir}",
            f"--heads={head_dir}",
            "--thresholds=0.2,100", "--cache-reuse-check", "--search-table", "--pruning-ratios=0.5",
            "--pruning-modes=stride,topk_norm"]
    assert main(argv) == 0
    suite = bench.name
    for name in ("main_table.csv", "action_ratio.csv", "pareto.csv", "pareto.json", "seed_runs.csv",
                 "accuracy_vs_tokens.png", "action_ratio.png", "reliability.png", "report.html", "error_slices.csv",
                 "calibration.csv", "latency.csv", "sweeps.csv", "pareto_lambda.csv", "pareto_lambda.json",
                 "pareto_threshold.csv", "pareto_threshold.json", "pareto_cache_reuse.csv", "search_only.csv",
                 "pareto_pruning.csv", "pareto_pruning.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rows = {r["policy"]: r for r in _csv(out / "main_table.csv")}
    assert list(rows) == ["always_full", "always_coarse", "no_vision", "random_policy_matched",
                          "random_bucket_matched", "uncertainty_threshold", "learned", "oracle"]
    assert all(r["suite"] == suite and r["n"] == "3" for r in rows.values())
    assert float(rows["always_full"]["action_rate_full"]) == 1.0 and float(rows["no_vision"]["mean_vision_tokens"]) == 0
    # the oracle from the forced runs' own predictions
    forced = {a: _preds(out / suite / p) for a, p in (("no", "no_vision"), ("coarse", "always_coarse"),
                                                       ("full", "always_full"))}
    oracle = oracle_records(forced)
    assert float(rows["oracle"]["accuracy"]) == pytest.approx(sum(r["correct"] for r in oracle) / 3, abs=1e-6)
    best = max(float(rows[p]["accuracy"]) for p in ("always_full", "always_coarse", "no_vision"))
    assert float(rows["oracle"]["accuracy"]) >= best
    # the random baseline: the learned policy's rates as its target, one folder per seed, mean over seeds
    learned = rows["learned"]
    target = "/".join(f"{float(learned[f'action_rate_{a}']):.3f}" for a in ("no", "coarse", "full"))
    assert rows["random_policy_matched"]["target_ratios"] == target and rows["random_policy_matched"]["seeds"] == "2"
    seeds = [r for r in _csv(out / "seed_runs.csv") if r["policy"] == "random_policy_matched"]
    assert [r["seed"] for r in seeds] == ["0", "1"]
    assert float(rows["random_policy_matched"]["accuracy"]) == pytest.approx(
        sum(float(r["accuracy"]) for r in seeds) / 2, abs=1e-6)
    for s in (0, 1):
        (run,) = json.loads((out / suite / "random_policy_matched" / f"seed{s}" / "summary.json").read_text())[
            "runs"].values()
        assert run["config"]["seed"] == s and run["config"]["policy"]["baseline_name"] == "random_policy_matched"
    # Pareto: the non-dominated rows of the main table
    pareto = json.loads((out / "pareto.json").read_text())[suite]
    assert pareto and {p["policy"] for p in pareto} <= set(rows)
    assert [p["policy"] for p in pareto] == [r["policy"] for r in _csv(out / "pareto.csv")]
    assert "oracle" not in {p["policy"] for p in pareto}  # a reference, never on the front
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])[0]["policy"] == "always_full"
    _check_sweeps_and_analyses(out, suite, rows, head_dir)
    # re-running resumes: no question is asked again
    sizes = {p: len(_preds(out / suite / p)) for p in ("always_full", "learned")}
    assert main(argv) == 0
    assert {p: len(_preds(out / suite / p)) for p in sizes} == sizes
    _check_in_browser(out / "report.html", tmp_path)


def _check_sweeps_and_analyses(out, suite, rows, head_dir):
    sweeps = _csv(out / "sweeps.csv")
    assert [(r["sweep"], r["value"]) for r in sweeps] == [
        ("lambda", head_dir.name), ("heads", head_dir.name), ("threshold", "0.2"), ("threshold", "100"),
        ("pruning", "stride 0.5"), ("pruning", "topk_norm 0.5"), ("cache_reuse", "false")]
    by = {(r["sweep"], r["value"]): r for r in sweeps}
    # the lambda sweep's only head is the learned policy's head: the same run's figures
    assert by[("lambda", head_dir.name)]["accuracy"] == rows["learned"]["accuracy"]
    # the next-token entropy never exceeds ln(vocabulary) < 100: that threshold never looks
    assert float(by[("threshold", "100")]["action_rate_no"]) == 1.0
    assert by[("cache_reuse", "false")]["accuracy"] == rows["learned"]["accuracy"]  # the cache changes no answer
    full_tokens = float(rows["always_full"]["mean_vision_tokens"])
    for mode in ("stride", "topk_norm"):  # half of every image's tokens left the model's input
        pruned = by[("pruning", f"{mode} 0.5")]
        assert float(pruned["action_rate_full"]) == 1.0 and 0 < float(pruned["mean_vision_tokens"]) < full_tokens
    assert {r["on_front"] for r in _csv(out / "pareto_threshold.csv")} <= {"True", "False"}
    slices = _csv(out / "error_slices.csv")
    full = [r for r in slices if r["policy"] == "always_full"]
    assert {r["action"] for r in full} == {"full"} and sum(int(r["n"]) for r in full) == 3
    cal = {(r["policy"], r["action"]): r for r in _csv(out / "calibration.csv")}
    assert 0.0 <= float(cal[("always_full", "all")]["answer_ece"]) <= 1.0
    assert float(cal[("always_full", "all")]["policy_confidence"]) == 1.0  # a baseline's one-hot choice
    assert 0.0 < float(cal[("learned", "all")]["policy_confidence"]) <= 1.0
    search = {r["strategy"]: r for r in _csv(out / "search_only.csv")}
    assert set(search) == {"vstar", "bfs"} and all(int(r["n"]) > 0 for r in search.values())
    assert all(float(r["mean_nodes_all"]) >= 1 and 0 <= float(r["found_rate"]) <= 1 for r in search.values())
    lat = {r["policy"]: r for r in _csv(out / "latency.csv")}
    assert float(lat["always_full"]["search_p95"]) >= float(lat["always_full"]["search_p50"]) > 0
    assert float(lat["no_vision"]["seconds_p50"]) > 0 and float(lat["no_vision"]["peak_rss_mb"]) > 0


def _check_in_browser(page, tmp_path):
    if not CHROMIUM.exists():
        if os.environ.get("SEAL_ALLOW_NO_BROWSER") == "1":
            pytest.skip("needs Debian chromium; skipped because SEAL_ALLOW_NO_BROWSER=1")
        pytest.fail(f"needs Debian chromium at {CHROMIUM}; set SEAL_ALLOW_NO_BROWSER=1 to skip")
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and 'src="file' not in text  # self-contained
    dom = _chromium(["--dump-dom", page.resolve().as_uri()], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "random_policy_matched" in dom.stdout and "Pareto front" in dom.stdout
    assert len(re.findall(r"<img [^>]*src=\"data:image/png;base64,", dom.stdout)) == 3
    assert "Calibration per action" in dom.stdout and "Error slices" in dom.stdout


def test_pruning_sweep_modes_and_their_overrides(tmp_path, capsys):
    from eval.experiment import pruning_overrides
    from seal.config import AskConfig, load

    for mode in ("stride", "topk_norm", "merger", "pruners", "merger+pruners", "entropy"):
        cfg = load(overrides=list(pruning_overrides(mode, 0.25)), cls=AskConfig, search_profile=False)
        assert cfg.vision_budget.pruning_mode == mode
        if mode == "entropy":
            assert cfg.vision_budget.entropy.mode == "budget" and cfg.vision_budget.entropy.alpha == 0.25
        else:
            assert cfg.vision_budget.pruning_ratio == 0.25
    empty = tmp_path / "suite"
    empty.mkdir()
    argv = ["experiment", "--suite", str(empty), "--out", str(tmp_path / "exp"), "--pruning-ratios=0.5",
            "--pruning-modes=stride,pruned"]
    assert main(argv) == 2  # one line naming the modes it knows
    assert "stride, topk_norm, merger, pruners, merger+pruners, entropy" in capsys.readouterr().err
