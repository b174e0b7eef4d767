#!/usr/bin/env bash
# The checks a session with a lent GPU machine runs, as ONE command (docs/gpu-checks.md):
#   run(command="bash benchmarks/gpu_checks.sh", carry=[".whl", ".gl"], timeout_s=540)
# after `make gpu-kit` here. It installs the kit (wheels into /tmp/site, glvnd's EGL into /, espeak-ng's libraries
# and a static ffmpeg under /tmp), then runs, each under its own timeout, with its output in $OUT/<name>.log:
#   deepspeed  tests/test_deepspeed.py -m gpu: a real `dtl train trainer=deepspeed_stage2` on CUDA, then `dtl export`
#   emodiff    benchmarks/bench_emodiff.py --device cuda: training windows/s, x real time per sampler (DDIM-50 ref.), DDPM-500
#   renderer   benchmarks/bench_renderer.py --device cuda: face-vid2vid frames/s (the 256-px network), end to end
#   render     benchmarks/bench_render.py: the face rig through EGL on the GPU at 256 and 512 px
#   warp       benchmarks/bench_warp.py --device cuda: the warp renderer at 256 and 512-px faces, end to end
#   renderer_mouth  benchmarks/bench_renderer_mouth.py --trainer gpu: bf16 renderer fine-tuning, the jaw probe's
#              curve (does the mouth follow jawOpen after N GPU steps? the renderer's open criterion)
# plus the machine and the kit (kit.log) and summary.txt: 8 files, the most a call returns. Exit status: the number
# of failed checks. GPU_CHECKS_ONLY="warp renderer_mouth" runs only the checks named (after the kit).
# CPU smoke test of the same steps at tiny scale: GPU_CHECKS_DEVICE=cpu bash benchmarks/gpu_checks.sh
set -u

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEVICE=${GPU_CHECKS_DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu_checks_out}
BUDGET_S=${GPU_CHECKS_BUDGET_S:-500}  # the whole script; each check's timeout is cut to what is left of it
SITE=/tmp/site
DEBROOT=/tmp/gpu_checks_debroot
# wandb's requirements that are deliberately not carried: nothing on these checks' paths imports them
NOT_CARRIED="cwevals opentelemetry-sdk opentelemetry-exporter-otlp-proto-http"

case "$DEVICE" in
    cuda) PY=${GPU_CHECKS_PYTHON:-python3} ;;
    cpu) PY=${GPU_CHECKS_PYTHON:-$([ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python3)}
         export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} ;;
    *) echo "GPU_CHECKS_DEVICE must be cuda or cpu, not '$DEVICE'" >&2; exit 64 ;;
esac
export PYTHONUNBUFFERED=1 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=offline WANDB_SILENT=true \
    HYDRA_FULL_ERROR=1 NCCL_DEBUG=${NCCL_DEBUG:-WARN}
SUMMARY="$OUT/summary.txt"
FAILED=0

note() { echo "$*" | tee -a "$SUMMARY"; }

machine() {
    echo "date: $(date -u +%FT%TZ); device mode: $DEVICE; repo: $REPO; python: $PY ($("$PY" -V 2>&1))"
    uname -a; echo "cores: $(nproc --all)"; free -g 2>/dev/null | head -2
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    else
        echo "no nvidia-smi on this machine"
    fi
}

# Wheels into $SITE, except those whose distribution the machine already has at the same or a newer version.
install_wheels() {
    local wheels
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "no .whl/*.whl: run 'make gpu-kit' and name .whl in carry"
        return 1
    fi
    wheels=$("$PY" - .whl/*.whl <<'PY'
import importlib.metadata as md
import sys
from pathlib import Path

from packaging.version import Version

for wheel in sys.argv[1:]:
    name, version = Path(wheel).name.split("-")[:2]
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        print(wheel)
        continue
    if Version(have) >= Version(version):
        print(f"keeping the machine's {name} {have} (the kit has {version})", file=sys.stderr)
    else:
        print(wheel)
PY
    ) || return 1
    # shellcheck disable=SC2086  # one wheel path a word
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" $wheels ||
        return 1
    export PYTHONPATH="$SITE:$PYTHONPATH"
    echo "installed $(echo "$wheels" | wc -w) wheels into $SITE"
}

# glvnd's EGL/GL loaders into / (the device README's recipe); EGL pinned to NVIDIA's vendor library, so that a
# Mesa vendor the image may have cannot take device 0.
install_gl() {
    local f vendor
    ls .gl/*.deb >/dev/null 2>&1 || { echo "no .gl/*.deb: run 'make gpu-kit' and name .gl in carry"; return 1; }
    for f in .gl/*.deb; do dpkg -x "$f" / || return 1; done
    ldconfig
    for vendor in /usr/share/glvnd/egl_vendor.d/10_nvidia.json /etc/glvnd/egl_vendor.d/10_nvidia.json \
                  /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json; do
        if [ -f "$vendor" ]; then
            export __EGL_VENDOR_LIBRARY_FILENAMES="$vendor"
            echo "EGL vendor: $vendor"
            return 0
        fi
    done
    echo "no NVIDIA EGL vendor file found: EGL may fall back to another vendor (the render check then fails)"
}

# .gl/extra's packages (espeak-ng and what it links) unpacked under $DEBROOT, never into /: only the libraries the
# machine lacks are linked into $DEBROOT/missing, which goes on LD_LIBRARY_PATH, so nothing of its own is shadowed.
install_extra_libs() {
    local f
    ls .gl/extra/*.deb >/dev/null 2>&1 || { echo "no .gl/extra/*.deb: run 'make gpu-kit'"; return 1; }
    rm -rf "$DEBROOT" && mkdir -p "$DEBROOT/missing" || return 1
    for f in .gl/extra/*.deb; do dpkg -x "$f" "$DEBROOT" || return 1; done
    "$PY" - "$DEBROOT" <<'PY' || return 1
import subprocess
import sys
from pathlib import Path

root = Path(sys.argv[1])
cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout.splitlines()[1:]
have = {line.split()[0] for line in cache if line.strip()}
libs = {p.name: p for folder in ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu")
        for p in sorted((root / folder).glob("*.so.*"))}
linked = [name for name in libs if name not in have]
# libpulse finds its private libpulsecommon through a RUNPATH into /usr: link it only along with our libpulse
if "libpulse.so.0" in linked:
    private = {p.name: p for p in (root / "usr/lib/x86_64-linux-gnu/pulseaudio").glob("*.so")}
    libs.update(private)
    linked += sorted(private)
for name in linked:
    (root / "missing" / name).symlink_to(libs[name])
sonames = [n for n in linked if n.count(".") <= 2]  # libfoo.so.N, the names the loader asks for
print(f"linked {len(linked)} files this machine lacks: {' '.join(sonames) or '-'} ...")
PY
    export LD_LIBRARY_PATH="$DEBROOT/missing${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    if [ -e "$DEBROOT/missing/libespeak-ng.so.1" ]; then
        export ESPEAK_DATA_PATH="$DEBROOT/usr/lib/x86_64-linux-gnu"  # the folder holding espeak-ng-data/
    fi
}

# A static ffmpeg (the kit's .gl/ffmpeg.xz) for the video writes, unless the machine has one: imageio-ffmpeg and the
# project's media layer take it from IMAGEIO_FFMPEG_EXE.
install_ffmpeg() {
    "$PY" -c 'import imageio_ffmpeg; imageio_ffmpeg.get_ffmpeg_exe()' 2>/dev/null && return 0
    [ -f .gl/ffmpeg.xz ] || { echo "no .gl/ffmpeg.xz: run 'make gpu-kit'"; return 1; }
    "$PY" -c 'import lzma, shutil, sys
with lzma.open(sys.argv[1]) as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)' .gl/ffmpeg.xz /tmp/ffmpeg && chmod +x /tmp/ffmpeg || return 1
    export IMAGEIO_FFMPEG_EXE=/tmp/ffmpeg
    echo "ffmpeg unpacked from .gl/ffmpeg.xz: $(/tmp/ffmpeg -version | head -1)"
}

espeak_loads() { "$PY" -c 'import ctypes; ctypes.CDLL("libespeak-ng.so.1")' 2>/dev/null; }

# The kit's modules and the project's import from where they should; espeak-ng speaks; every requirement of the
# carried distributions is met (informational); an ffmpeg for bench_renderer's encoding step.
check_kit() {
    timeout 180 "$PY" - "$NOT_CARRIED" <<'PY'
import importlib
import importlib.metadata as md
import subprocess
import sys

from packaging.requirements import Requirement


def version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "MISSING"


failed = 0
for name in ("hydra", "omegaconf", "antlr4", "wandb", "pydantic", "deepspeed", "librosa", "soundfile", "soxr",
             "audioread", "pooch", "moderngl", "glcontext", "imageio_ffmpeg", "torch", "lightning", "experiments.train",
             "experiments.export", "rendering.gl_renderer", "lightning_modules.emodiff"):
    try:
        module = importlib.import_module(name)
        print(f"import {name}: {getattr(module, '__version__', '')} {getattr(module, '__file__', '')}")
    except Exception as e:  # noqa: BLE001  (report every module that fails, then fail once)
        print(f"import {name}: FAILED {type(e).__name__}: {e}")
        failed += 1
print("the machine's own: " + ", ".join(f"{d} {version(d)}" for d in (
    "torch", "lightning", "numpy", "scipy", "numba", "scikit-learn", "protobuf", "click", "typing-extensions",
    "packaging", "msgpack", "lazy-loader")))
not_carried = set(sys.argv[1].split())
for dist in ("hydra-core", "omegaconf", "antlr4-python3-runtime", "wandb", "deepspeed", "pydantic", "librosa",
             "soundfile", "pooch", "moderngl", "imageio-ffmpeg"):
    for text in md.requires(dist) or []:
        req = Requirement(text)
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        have = version(req.name)
        if have == "MISSING":
            state = "not carried (not imported by these checks)" if req.name in not_carried else "MISSING"
        else:
            state = "ok" if req.specifier.contains(have, prereleases=True) else "VERSION MISMATCH"
        if state != "ok":
            print(f"requirement of {dist}: {req} -> {have}: {state}")
try:
    from datamodules.demo.speech import synthesize

    speech = synthesize("checking the speech synthesiser", voice="en-us")
    print(f"espeak-ng: {len(speech.wave) / speech.sample_rate:.2f} s of speech, {len(speech.phonemes)} phonemes")
except Exception as e:  # noqa: BLE001
    print(f"espeak-ng: FAILED {type(e).__name__}: {e}")
    failed += 1
try:  # only bench_renderer's encoding step needs one: the renderer check says when it is missing
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    banner = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
    print(f"ffmpeg: {exe} ({banner})")
except Exception as e:  # noqa: BLE001
    print(f"ffmpeg: none ({e})")
sys.exit(failed)
PY
}

# name cap_seconds command...: runs the command under a timeout cut to the budget left, output into $OUT/name.log.
RC=0
WALL=0
run_logged() {
    local name=$1 cap=$2 left start
    shift 2
    left=$((BUDGET_S - SECONDS - 15))
    [ "$left" -lt "$cap" ] && cap=$left
    if [ "$cap" -lt 20 ]; then
        echo "not run: only ${left} s of the ${BUDGET_S}-s budget left" | tee "$OUT/$name.log"
        RC=124 WALL=0
        return
    fi
    start=$SECONDS
    echo "\$ $* (timeout ${cap} s)" >"$OUT/$name.log"
    timeout -k 10 "$cap" "$@" 2>&1 | tee -a "$OUT/$name.log"
    RC=${PIPESTATUS[0]}
    WALL=$((SECONDS - start))
    [ "$RC" -eq 124 ] && echo "TIMED OUT after ${cap} s" | tee -a "$OUT/$name.log"
}

# name verdict reason figure-pattern: one summary line, then the log's figure lines.
verdict() {
    local name=$1 ok=$2 reason=$3 pattern=$4
    if [ "$ok" = 1 ]; then
        note "PASS $name (${WALL} s): $reason"
    else
        note "FAIL $name (${WALL} s, rc $RC): $reason"
        FAILED=$((FAILED + 1))
    fi
    grep -E "$pattern" "$OUT/$name.log" | tail -n 12 | sed 's/^/    /' >>"$SUMMARY"
}

has() { grep -qE "$2" "$OUT/$1.log"; }

# GPU_CHECKS_ONLY="renderer warp" runs only those checks (the kit is always installed)
CHECKS=0
wanted() {
    case " ${GPU_CHECKS_ONLY:-$1} " in *" $1 "*) CHECKS=$((CHECKS + 1)); return 0 ;; *) return 1 ;; esac
}

main() {
    cd "$REPO" && mkdir -p "$OUT" && : >"$SUMMARY" || exit 64
    machine >"$OUT/kit.log" 2>&1
    GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
    note "gpu_checks ($DEVICE) on $(uname -n), $(nproc --all) cores${GPU:+, $GPU}"

    # --- the kit
    start=$SECONDS
    {
        kit_ok=1
        if [ "$DEVICE" = cuda ]; then
            install_wheels || kit_ok=0
            install_gl || kit_ok=0
            install_extra_libs || kit_ok=0
            install_ffmpeg || kit_ok=0
        else  # here: the venv has the packages and the system espeak-ng; install only what is missing
            if ! "$PY" -c "import hydra, wandb, deepspeed, librosa, moderngl, imageio_ffmpeg" 2>/dev/null; then
                SITE=${TMPDIR:-/tmp}/gpu_checks_site
                install_wheels || kit_ok=0
            fi
            espeak_loads || install_extra_libs || kit_ok=0
        fi
        echo "PYTHONPATH=$PYTHONPATH"; echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
        check_kit || kit_ok=0
        echo "kit_ok=$kit_ok"
    } >>"$OUT/kit.log" 2>&1
    WALL=$((SECONDS - start)) RC=$((1 - ${kit_ok:-0}))
    verdict kit "${kit_ok:-0}" "wheels, EGL loaders, espeak-ng; see kit.log" \
        "FAILED|MISSING|MISMATCH|^espeak-ng|^ffmpeg|^linked|^keeping"
    FFMPEG_OK=$(grep -q "^ffmpeg: /" "$OUT/kit.log" && echo 1 || echo 0)

    # --- (a) DeepSpeed ZeRO-2 on the GPU through `dtl train`, then `dtl export`
    if wanted deepspeed; then
        if [ "$DEVICE" = cuda ]; then
            run_logged deepspeed 210 "$PY" -m pytest -m gpu -p no:cacheprovider -q tests/test_deepspeed.py
            ok=0; [ "$RC" -eq 0 ] && has deepspeed "^1 passed" && ok=1
            verdict deepspeed $ok "the GPU DeepSpeed test must pass (not skip)" \
                "^(FAILED|ERROR|SKIPPED)|[0-9]+ (passed|failed|skipped|errors?)"
        else  # no CUDA here: the test would skip; check that exactly it is selected
            run_logged deepspeed 120 "$PY" -m pytest -m gpu -p no:cacheprovider -q --collect-only tests/test_deepspeed.py
            ok=0; [ "$RC" -eq 0 ] && has deepspeed "::test_deepspeed_stage2_fit_on_gpu_exports_loadable_weights$" &&
                has deepspeed "^1/[0-9]+ tests? collected" && ok=1
            verdict deepspeed $ok "collects the one GPU test" "collected"
        fi
    fi

    # --- (b) EmoDiff speed
    if wanted emodiff; then
        if [ "$DEVICE" = cuda ]; then
            run_logged emodiff 90 "$PY" benchmarks/bench_emodiff.py --device cuda --train-steps 100
        else
            run_logged emodiff 90 "$PY" benchmarks/bench_emodiff.py --device cpu --seconds 1 --train-steps 2 --repeats 1
        fi
        ok=0; [ "$RC" -eq 0 ] && has emodiff "device $DEVICE" && has emodiff "^sampling DDPM-500" && ok=1
        verdict emodiff $ok "training windows/s and sampling x real time on $DEVICE" "^(machine|training|sampling|peak)"
    fi

    # --- (b2) EmoDiff sampling under bf16 autocast (the GPU inference path), the default sampler against DDIM-50
    if wanted emodiff_bf16 && [ "$DEVICE" = cuda ]; then
        run_logged emodiff_bf16 90 "$PY" benchmarks/bench_emodiff.py --device cuda --train-steps 20 --bf16 \
            --samplers ddim:50 dpmpp_2m:8 --ddpm-repeats 0
        ok=0; [ "$RC" -eq 0 ] && has emodiff_bf16 "DPM\+\+2M" && ok=1
        verdict emodiff_bf16 $ok "sampling x real time under bf16 on $DEVICE" "^(machine|sampling|peak)"
    fi

    # --- (c) face-vid2vid speed (the 256-px network is the figure wanted), rig + encoding, end to end
    if wanted renderer; then
        if [ "$DEVICE" = cuda ]; then
            run_logged renderer 120 "$PY" benchmarks/bench_renderer.py --device cuda --frames 64 --demo-frames 200 --batch 8
        else
            run_logged renderer 120 "$PY" benchmarks/bench_renderer.py --device cpu --frames 1 --demo-frames 2 --batch 1
        fi
        ok=0; reason="face-vid2vid 256 px frames/s on $DEVICE, then rig, encoding and end to end"
        if has renderer "^face-vid2vid default \(256 px"; then
            if [ "$RC" -eq 0 ]; then
                ok=1
            elif [ "$FFMPEG_OK" = 0 ] && tail -3 "$OUT/renderer.log" | grep -qi "ffmpeg"; then
                ok=1
                reason="face-vid2vid 256 px frames/s on $DEVICE; rig, encoding, end to end NOT measured: no ffmpeg here"
            fi
        fi
        verdict renderer $ok "$reason" "^(machine|face-vid2vid|rig render|end to end)"
    fi

    # --- (d) the face rig through EGL
    if wanted render; then
        if [ "$DEVICE" = cuda ]; then
            run_logged render 90 "$PY" benchmarks/bench_render.py --frames 200 --sizes 256 512
        else
            run_logged render 90 "$PY" benchmarks/bench_render.py --frames 4 --sizes 256 512
        fi
        ok=0; reason="frames/s at 256 and 512 px, three anti-aliasing modes"
        if [ "$RC" -eq 0 ] && has render "^256px AA msaa4" && has render "^512px AA msaa4"; then
            ok=1
            if [ "$DEVICE" = cuda ] && ! has render "GL: .*NVIDIA"; then
                ok=0 reason="EGL did not render on the NVIDIA GPU (see the GL line)"
            fi
        fi
        verdict render $ok "$reason" "^(machine|default rig|[0-9]+px AA)"
    fi

    # --- (e) the warp renderer on the GPU: avatar render, warp + paste-back, end to end with both MP4s
    if wanted warp; then
        if [ "$DEVICE" = cuda ]; then
            # the rig's calibration and the astronaut's landmarks come from the kit (.gl/warp, make gpu-kit-warp):
            # dlib's 68-point model is too big to travel
            run_logged warp 120 env DTL_CACHE_DIR="$REPO/.gl/warp" "$PY" benchmarks/bench_warp.py --device cuda \
                --threads 16 --batch 32 --face-size 256 512 --portrait-landmarks "$REPO/.gl/warp/astronaut_landmarks.npy"
        else
            run_logged warp 120 "$PY" benchmarks/bench_warp.py --device cpu --seconds 0.4 --face-size 256
        fi
        ok=0; [ "$RC" -eq 0 ] && has warp "^face 256 px" && ok=1
        verdict warp $ok "warp renderer frames/s on $DEVICE at 256 and 512-px faces, end to end after EmoDiff" \
            "^(machine|face [0-9]+ px)"
    fi

    # --- (f) the renderer's mouth criterion as a learning curve, bf16 on the GPU
    if wanted renderer_mouth; then
        if [ "$DEVICE" = cuda ]; then
            run_logged renderer_mouth 150 "$PY" benchmarks/bench_renderer_mouth.py --trainer gpu --steps 1000 --every 100
        else
            run_logged renderer_mouth 120 "$PY" benchmarks/bench_renderer_mouth.py --trainer cpu --steps 4 --every 2 \
                --batch 2
        fi
        ok=0; [ "$RC" -eq 0 ] && has renderer_mouth "^probe at step" && ok=1
        verdict renderer_mouth $ok "renderer fine-tuning (trainer=${DEVICE/cuda/gpu}) with the jaw probe every 100 steps" \
            "^(corpus|training|probe at|final)"
    fi

    note "failed checks: $FAILED of $((CHECKS + 1)) (the kit and ${CHECKS} checks); total ${SECONDS} s; logs in $OUT"
    return "$FAILED"
}

# sourced (a test of one function) it defines the functions only
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main
    exit "$FAILED"
fi
