# pan: two commands on a fresh machine (see README.md)
#   make demo   set up .venv with every runtime and run `pan demo`
#   make test   set up .venv with every runtime and the test tools, then run the whole suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup lint generate bench clean

$(STAMP): pyproject.toml examples/verdict-runtime/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,test]' -e examples/verdict-runtime
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/pan demo

test: $(STAMP)
	$(BIN)/python -m pni_spec.generate --check
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider

generate: $(STAMP)
	$(BIN)/python -m pni_spec.generate

bench: $(STAMP)
	$(BIN)/pan bench --experiment dispatch,ping,flood --topology inproc,udp,netns --runtime native,wasm,jvm,restricted_py,null,bare --json docs/bench-example/run.json --plot docs/bench-example

clean:
	rm -rf $(VENV)
