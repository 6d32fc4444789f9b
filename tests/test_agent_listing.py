"""``agent.list_targets_above``: in FULL vision, a greedy answer from the global view gives way to the
refusal (its prefix forced) when the refusal was probable enough; and the VQA model's forced prefix."""

import pytest

from seal.errors import ConfigError
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
    for threshold in ("0.0", "0.0000001", "1.0"):  # as written in YAML
        agent = make_agent(vqa, f"agent.list_targets_above={threshold}")
        agent.set_image(image, annotation)
        runs[threshold] = agent.ask(OTHER_QUESTION, force_action="full")
    off, low, high = runs["0.0"], runs["0.0000001"], runs["1.0"]
    assert not off.targets and not high.targets  # answered from the view
    assert not any(e["type"] == "listed_anyway" for e in off.events + high.events)
    assert high.ledger.llm_calls == off.ledger.llm_calls + 1  # the probe only
    assert any(e["type"] == "listed_anyway" for e in low.events)
    assert low.targets and len(low.search) == len(low.targets)  # whatever the model lists is searched


def test_threshold_must_be_a_probability():
    from seal.agent.config import AgentConfig

    with pytest.raises(ConfigError, match="agent.list_targets_above"):
        AgentConfig(list_targets_above=1.5)
