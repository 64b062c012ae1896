# pan: two commands on a fresh machine (see README.md)
#   make demo   set up .venv with every runtime and run `pan demo`
#   make test   set up .venv with every runtime and the test tools, then run the whole suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup lint generate bench clean

# pip prints each package as it goes: the first setup fetches wasmtime, zig, JPype and
# matplotlib and compiles pan's C extensions, a few minutes on a small machine
$(STAMP): pyproject.toml setup.py examples/verdict-runtime/pyproject.toml
	@echo "==> [1/3] creating $(VENV) with $(PY)"
	$(PY) -m venv $(VENV)
	@echo "==> [2/3] upgrading pip in $(VENV)"
	$(BIN)/python -m pip install --progress-bar off --upgrade pip
	@echo "==> [3/3] installing pan with every runtime and the test tools (a few minutes the first time)"
	$(BIN)/python -m pip install --progress-bar off -e '.[all,test]' -e examples/verdict-runtime
	touch $(STAMP)
	@echo "==> $(VENV) is ready"

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/pan demo

test: $(STAMP)
	$(BIN)/python -m pni_spec.generate --check
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=20

generate: $(STAMP)
	$(BIN)/python -m pni_spec.generate

# the example run of docs/bench.md: a short run (four sizes, 300 capsules, 3 trials; about 7 minutes)
bench: $(STAMP)
	$(BIN)/pan bench --experiment dispatch,ping,flood --topology inproc,udp,netns --runtime native,wasm,jvm,restricted_py,null,bare --size 156,512,1500,8192 --count 300 --trials 3 --json docs/bench-example/run.json --plot docs/bench-example --quiet > docs/bench-example/run.txt
	$(BIN)/pan bench report docs/bench-example/run.json -o docs/bench-example/report.md --plot docs/bench-example

clean:
	rm -rf $(VENV)
