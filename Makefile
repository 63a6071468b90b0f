# Everything runs inside a local virtual environment (.venv/), created on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test parity profile clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

parity: $(STAMP)
	$(PY) tools/parity.py tests/data/golden/*.pt --fast-path

profile: $(STAMP)
	$(PY) tools/profile_model.py --config configs/mixformerv2_s.yaml --device cpu --threads 2

clean:
	rm -rf $(VENV) build *.egg-info
