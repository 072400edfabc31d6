# The README's two commands: `make demo` (main job) and `make test` (test suite).
# Both set up .venv (with the `livediff` command) and build the plugin into build/.
PY := .venv/bin/python
VST3 := build/livediff.vst3/Contents/x86_64-linux/livediff.so

.PHONY: setup plugin demo test clean
setup: .venv/.installed
.venv/.installed: pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh
	touch $@

plugin: setup
	.venv/bin/livediff build-plugin

demo: plugin
	.venv/bin/livediff demo -o demo.wav

test: plugin
	$(PY) -m pytest -q tests

clean:
	rm -rf build
