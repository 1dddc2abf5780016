PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test

# Both targets create the virtual environment on first use.
demo: $(STAMP)
	$(VENV)/bin/python CASME2_5.py --demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $(STAMP)
