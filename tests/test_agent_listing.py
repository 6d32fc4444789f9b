"""``agent.list_targets_above``: in FULL vision, a greedy answer from the global view gives way to the
refusal (its prefix forced): always (0, the default), when the refusal was probable enough, or never
(null); and the VQA model's forced prefix."""

import pytest

from seal.core.errors import ConfigError
from seal.vqa.refusal import REFUSAL_PREFIX, parse_missing_targets
from tests.test_agent_fixtures import OTHER_QUESTION, QUESTION, make_agent, scene, trained_vqa, write_scene


@pytest.fixture(scope="module")
def vqa():
    return trained_vqa()


def test_forced_prefix_and_refusal_probability(vqa):
    view = scene()
    assert vqa.refusal_probability(view, QUESTION) > 0.5  # trained to refuse it
    assert vqa.refusal_probability(view, OTHER_QUESTION) < 0.5  # and to answer this one
    listed = vqa.answer(view, OTHER_QUESTION, prefix=REFUSAL_PREFIX)
    assert listed.startswith(REFUSAL_PREFIX) and parse_missing_targets(listed) is not None
    assert parse_missing_targets(vqa.answer(view, OTHER_QUESTION)) is None


def test_full_vision_lists_the_targets_anyway_above_the_threshold(vqa, tmp_path):
    image, annotation = write_scene(tmp_path)
    runs = {}
    for threshold in ("null", "0.0", "0.0000001", "1.0"):  # as written in YAML
        agent = make_agent(vqa, f"agent.list_targets_above={threshold}")
        agent.set_image(image, annotation)
        runs[threshold] = agent.ask(OTHER_QUESTION, force_action="full")
    off, always, low, high = runs["null"], runs["0.0"], runs["0.0000001"], runs["1.0"]
    assert not off.targets and not high.targets  # answered from the view
    assert not any(e["type"] == "listed_anyway" for e in off.events + high.events)
    assert high.ledger.llm_calls == off.ledger.llm_calls + 1  # the probe only
    for run in (always, low):
        listed = [e for e in run.events if e["type"] == "listed_anyway"]
        assert listed and run.targets and len(run.search) == len(run.targets)  # whatever it lists is searched
    assert [e["refusal_probability"] for e in always.events if e["type"] == "listed_anyway"] == [None]  # no probe
    assert always.targets == low.targets
    assert low.ledger.llm_calls - always.ledger.llm_calls == 1


def test_threshold_must_be_a_probability():
    from seal.agent.config import AgentConfig

    with pytest.raises(ConfigError, match="agent.list_targets_above"):
        AgentConfig(list_targets_above=1.5)
