"""The policy table's per-run summary and markdown, on hand-written prediction records."""

from research.policy_matrix import markdown, summarize


def _rec(tag, action, correct, tokens, seconds):
    return {"question_id": f"{tag}/{action}/{seconds}", "category": tag, "tag": tag, "action": action,
            "correct": correct, "vision_tokens": tokens, "seconds": seconds, "peak_rss_mb": 1.0}


def test_summary_and_table():
    records = [_rec("text", "no", True, 0, 0.1), _rec("search", "full", True, 900, 2.0),
               _rec("search", "full", False, 1100, 4.0), _rec("coarse", "coarse", False, 64, 0.5)]
    s = summarize(records)
    assert s["accuracy"] == 0.5 and s["avg_cost"] == (900 + 1100 + 64) / 4
    assert s["action_rates"] == {"no": 0.25, "coarse": 0.25, "full": 0.5}
    assert s["accuracy_by_tag"] == {"coarse": 0.0, "search": 0.5, "text": 1.0}
    assert s["median_seconds_by_action"] == {"coarse": 0.5, "full": 3.0, "no": 0.1}
    s["accuracy_vs_full"], s["cost_vs_full"] = 1.0, 1.0
    table = markdown({"mixed": {"always_full": s}})
    assert "| mixed | always_full | 0.500 | 1.00 | 516 | 1.00 | 0.25 / 0.25 / 0.50 |" in table
