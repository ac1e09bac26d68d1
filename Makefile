# The README's two commands are `make demo` and `make test`; both set everything up themselves.
.PHONY: install demo test lint typecheck bench clean

install:
	@scripts/bootstrap.sh

demo: install
	.venv/bin/nsmigrate demo

test: install
	.venv/bin/python -m pytest

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck: install
	.venv/bin/mypy cli orchestrator workers sandbox bench

bench: install
	.venv/bin/python -m bench.fleet_vs_loop

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache *.egg-info
