# The README's two commands are `make demo` and `make test`; both set everything up themselves.
.PHONY: install demo test test-fast lint typecheck bench bench-more clean constraints

install:
	@scripts/bootstrap.sh

demo: install
	.venv/bin/nsmigrate demo

# Every tier (tests/tiers.py) on two xdist workers per core (tests/conftest.py: the fleet tier waits half its time;
# PYTEST_XDIST_AUTO_NUM_WORKERS=N overrides): each xdist worker starts its own Redis and Postgres, and a file's tests
# stay on one worker so its module fixtures start once. Files are handed out in collection order, the slowest tier
# first and its longest files first (tests/tiers.py RUN_ORDER, LONGEST_FLEET_FILES). TEST_WORKERS=0 runs it in this
# process.
TEST_WORKERS ?= auto
test:
	@NSMIGRATE_BOOTSTRAP_BROWSER=1 NSMIGRATE_BOOTSTRAP_MONITORING=1 scripts/bootstrap.sh
	.venv/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The unit tier only: pure, in-process tests, a verdict in seconds.
test-fast: install
	.venv/bin/python -m pytest tests/unit

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

# mypy reads a package from one folder: it checks a view of the installed layout made of links to the folders
# setup.py maps into nsmigrate (as tests/unit/test_layers.py does for import-linter). The links are made again, the
# mypy cache beside them kept: tests/unit/test_typecheck.py runs the same check on the same view on every test run.
typecheck: install
	@rm -rf build/typecheck/nsmigrate build/typecheck/nsmigrate_sandbox build/typecheck/bench
	@mkdir -p build/typecheck/nsmigrate
	@for part in cli orchestrator workers migrations; do ln -s ../../../$$part build/typecheck/nsmigrate/$$part; done
	@ln -s ../../../nsmigrate/__init__.py build/typecheck/nsmigrate/__init__.py
	@ln -s ../../sandbox build/typecheck/nsmigrate_sandbox && ln -s ../../bench build/typecheck/bench
	cd build/typecheck && ../../.venv/bin/mypy --config-file ../../pyproject.toml -p nsmigrate -p nsmigrate_sandbox -p bench

# The fleet against the strongest single-process rivals on the seed set, the large one and 2,000 small namespaces
# (BENCH_SETS=seed,large for a shorter run), then an import job verified end to end beside the same data upserted.
# bench-more: the seeds' loop, several indexes at once, an erasure.
BENCH_SETS ?= seed,large,many
bench: install
	.venv/bin/python -m bench.peer_vs_fleet --sets $(BENCH_SETS)
	.venv/bin/python -m bench.pgvector_vs_rival
	.venv/bin/python -m bench.import_job

bench-more: install
	.venv/bin/python -m bench.fleet_vs_loop
	.venv/bin/python -m bench.beyond_one_process
	.venv/bin/python -m bench.erasure

# constraints.txt again from what .venv has (its comment header kept; nsmigrate and the stand-ins are editable, so left
# out): run it once the tests pass on new versions.
constraints:
	@{ sed '/^[^#]/,$$d' constraints.txt; .venv/bin/pip freeze --exclude-editable | grep -vi '^nsmigrate'; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache *.egg-info
