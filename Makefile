# All set-up is here: `make demo` / `make test` create .venv when missing and install the pinned
# dependencies (re-installed only when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: setup demo test experiment clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m seal bench synth --out $(DEMO_DIR)/bench --n 8 --seed 11 --split test --suite mixed --overwrite
	# a question whose text gives the answer away: the learned policy answers without vision
	$(PY) -m seal ask --image $(DEMO_DIR)/bench/text_only/synth_test_00007.jpg \
		--sample $(DEMO_DIR)/bench/text_only/synth_test_00007.json --trace-dir $(DEMO_DIR)/trace
	# the same question with vision forced on: refusal, V* search, working memory, answer, cost
	$(PY) -m seal ask --image $(DEMO_DIR)/bench/text_only/synth_test_00007.jpg \
		--sample $(DEMO_DIR)/bench/text_only/synth_test_00007.json --force-action full \
		--search.max_nodes=12 --trace-dir $(DEMO_DIR)/trace_full
	# a small target: the learned policy sends it to full vision at once (p(full) 1.00) and V* searches: the root's expansion jumps to
	# level 2 (16 patches in one call), the crop matcher reads their confident boxes in one pass and
	# accepts the dotted cross on the first level-2 node visited (2 nodes); with its crop the answer
	# becomes the right "yellow"
	$(PY) -m seal ask --image $(DEMO_DIR)/bench/direct_attributes/synth_test_00002.jpg \
		--sample $(DEMO_DIR)/bench/direct_attributes/synth_test_00002.json \
		--trace-dir $(DEMO_DIR)/trace_search

# the experiment matrix of docs/RESULTS.md on a held-out mixed suite with the shipped models: every policy
# and baseline (3 seeds for the random ones), the oracle action, the lambda / threshold / pruning sweeps,
# the search alone per strategy, cache reuse off; tables, plots and report.html in $(EXP_DIR)/out
EXP_DIR ?= runs/exp
experiment: $(STAMP)
	$(PY) -m seal bench synth --out $(EXP_DIR)/suite_mixed --n 60 --seed 4242 --split test --suite mixed --overwrite
	$(PY) -m seal experiment --suite $(EXP_DIR)/suite_mixed --out $(EXP_DIR)/out --seeds 0,1,2 \
		--lambda-heads checkpoints/policy_tiny,checkpoints/policy_tiny_lam0.05,checkpoints/policy_tiny_lam0.01 \
		--thresholds 0.0005,0.0007,0.001,0.5 --pruning-ratios 0.5,0.25 --pruning-modes stride,topk_norm \
		--search-table --cache-reuse-check

# the layer contract (.importlinter), the linter, then the tests
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check seal search vwm training eval research tests
	$(PY) -m pytest -q

clean:
	rm -rf runs .pytest_cache
