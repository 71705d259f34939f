# The README's two set-up commands: `make demo` and `make test` (CONTRIBUTING.md has the others).
VENV ?= .venv
PY := $(VENV)/bin/python
# Installed explicitly first: on CPU hosts this is the CPU wheel; a bare `torch`
# requirement on a machine without torch would pull several GB of CUDA packages.
TORCH ?= torch==2.13.0
# The index torch comes from, e.g. https://download.pytorch.org/whl/cu128 for a CUDA build
# (a pip option, so it cannot go inside TORCH, which pip reads as one requirement).
TORCH_INDEX ?=
STUDY_DIR ?= studies/default-$(shell date +%Y%m%d-%H%M%S)

# glibc otherwise hands activation memory back to the OS every training step
# (1.4-2x CPU training speed measured on 2 cores); it must be set before Python starts.
export GLIBC_TUNABLES := glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296

.PHONY: install demo test lint docs schema unit integration clean

# The rest through uv (parallel downloads and byte-compilation: about half of pip's time);
# it keeps the torch pip installed, which satisfies the project's requirement.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/vae-study run examples/default.yaml --study-dir $(STUDY_DIR)

# Two workers, a test module each at a time (its module-scoped study is made once): most
# of an integration test's wall time is process start-up (Ray, MLflow, trial workers),
# not CPU, so two at a time fit the 2-core host. conftest.py runs integration tests first.
PYTEST_WORKERS ?= 2

test: install lint docs
	$(PY) -m pytest -q -ra -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The docs site into build/site (a few seconds); --strict fails on a broken link or a reference
# page docs/gen_reference.py cannot generate from the code.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# The spec's JSON Schema for editors (YAML language servers: `# yaml-language-server: $$schema=...`).
schema: install
	$(PY) docs/gen_reference.py schema > spec.schema.json

unit: install
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder -m "not integration"

integration: install
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder -m integration

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
