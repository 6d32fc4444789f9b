"""The text pass's KV cache: options scored from it equal a fresh likelihood scoring of the same prompt."""

import pytest

from seal.agent.kv import cached_text_pass, score_options_from_cache
from tests.test_agent_fixtures import OPTIONS, QUESTION, trained_vqa


@pytest.fixture(scope="module")
def vqa():
    return trained_vqa(steps=20)


def test_cached_scores_equal_fresh_scores_and_the_cache_serves_twice(vqa):
    state = cached_text_pass(vqa, QUESTION, None)
    assert state.has_cache
    options = [*OPTIONS, "x"]  # a one-token option too
    fresh = vqa.score_options(None, QUESTION, options)
    first = score_options_from_cache(vqa, state, options)
    again = score_options_from_cache(vqa, state, options)
    assert first == pytest.approx(list(fresh), abs=1e-4)
    assert again == pytest.approx(first, abs=1e-6)
    with pytest.raises(ValueError, match="at least one option"):
        score_options_from_cache(vqa, state, [])
