# Everything runs inside a local virtual environment (.venv/), created on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS_STAMP := $(VENV)/.installed-extras
# The VOT toolkit lives in its own environment (it needs opencv-python, which clashes with our headless OpenCV)
# and runs our tracker as a subprocess with .venv/bin/python; see mixformerv2/vot/toolkit-requirements.txt.
VOT_VENV := .venv-vot
VOT_REQUIREMENTS := mixformerv2/vot/toolkit-requirements.txt
VOT_STAMP := $(VOT_VENV)/.installed

.PHONY: setup extras vot-env demo test parity profile clean

# The package and what the quickstart needs; `extras` adds what the tests, export and the CPU backends need.
setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

extras: $(EXTRAS_STAMP)

$(EXTRAS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,vot,openvino]'
	touch $(EXTRAS_STAMP)

vot-env: $(VOT_STAMP)

# The last step compiles (and caches) the toolkit's numba overlap code once, instead of in the first analysis.
$(VOT_STAMP): $(VOT_REQUIREMENTS)
	$(PYTHON) -m venv $(VOT_VENV)
	$(VOT_VENV)/bin/python -m pip install --quiet -r $(VOT_REQUIREMENTS)
	$(VOT_VENV)/bin/python -c "from vot.region.raster import calculate_overlap as o; \
	from vot.region.shapes import Rectangle as R; o(R(0, 0, 4, 4), R(1, 1, 4, 4), (8, 8))"
	touch $(VOT_STAMP)

# The quickstart: synthetic data, the whole training pipeline, tracking, scoring and outputs/quickstart/report.md.
# A re-run continues where the last one stopped; FRESH=1 starts over.
demo: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) tools/quickstart.py $(if $(FRESH),--fresh)

test: $(EXTRAS_STAMP) $(VOT_STAMP)
	$(PY) -m pytest -q

parity: $(EXTRAS_STAMP)
	$(PY) tools/parity.py tests/data/golden/*.pt --fast-path

profile: $(STAMP)
	$(PY) tools/profile_model.py --config configs/mixformerv2_s.yaml --device cpu --threads 2

clean:
	rm -rf $(VENV) $(VOT_VENV) build *.egg-info
