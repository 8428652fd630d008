# The two commands of the README: `make demo` (the main job) and `make test`.
# Both set everything up first and are safe to run again.
VENV := .venv
LLMROUTER := $(VENV)/bin/llmrouter

.PHONY: setup demo test bench infra-up infra-down
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml infra/bootstrap.sh infra/web_assets.sh web/package-lock.json
	bash infra/bootstrap.sh
	touch $@

demo: setup
	$(LLMROUTER) demo

test: setup
	$(LLMROUTER) infra up
	$(VENV)/bin/python -m pytest

bench: setup
	$(VENV)/bin/python bench/local_model.py

infra-up: setup
	$(LLMROUTER) infra up

infra-down: setup
	$(LLMROUTER) infra down
