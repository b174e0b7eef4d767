"""System packages (sysdeps/debian.toml): each hidden from a real process is named with its fix, by the
installer's check and by the code that uses it; everything present installs nothing.

A program is hidden by a PATH of links to every other program; a library, driver or folder by mounting
/dev/null or an empty tmpfs over it in a private mount namespace (root, as `make test` and CI run).
"""

from __future__ import annotations

import copy
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import chromium

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "sysdeps"))
import ensure  # noqa: E402  (sysdeps/ is a folder of scripts run before any venv, not a package)

DEPS = ensure.load()
SYSTEM_PYTHON = sys.executable


def path_without(tmp_path: Path, hidden: set[str]) -> str:
    """A PATH holding links to every program on today's PATH except `hidden`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for folder in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            link = bin_dir / name
            if name not in hidden and not link.exists() and os.access(os.path.join(folder, name), os.X_OK):
                link.symlink_to(os.path.join(folder, name))
    return str(bin_dir)


def library_path(name: str) -> str:
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    paths = [line.split("=>")[1].strip() for line in cache.splitlines() if line.strip().startswith(name + " ")]
    assert paths, f"{name} is not in the loader cache (is it installed?)"
    return os.path.realpath(paths[0])


def run_hidden(command: list[str], *, masked_files=(), masked_dirs=(), env=None) -> subprocess.CompletedProcess:
    """Run `command` with `masked_files` replaced by /dev/null and `masked_dirs` by empty folders."""
    mounts = [f"mount --bind /dev/null {shlex.quote(f)}" for f in masked_files]
    mounts += [f"mount -t tmpfs none {shlex.quote(d)}" for d in masked_dirs]
    script = " && ".join([*mounts, "exec " + shlex.join(command)])
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def hide(name: str, tmp_path: Path) -> dict:
    """How to hide entry `name` of the list: the PATH and the masks that take away what it provides."""
    entry = DEPS[name]
    programs = set(entry.get("programs", [])) | set(entry.get("any_program", []))
    masked_files = [library_path(lib) for lib in entry.get("libraries", [])[:1]]
    masked_dirs = [os.path.dirname(f) for f in entry.get("files", [])]
    return {"env": dict(os.environ, PATH=path_without(tmp_path, programs)),
            "masked_files": masked_files, "masked_dirs": masked_dirs}


def swrast_driver() -> str:
    found = [p for p in ("/usr/lib/x86_64-linux-gnu/dri/swrast_dri.so", "/usr/lib/aarch64-linux-gnu/dri/swrast_dri.so",
                         "/usr/lib/dri/swrast_dri.so", "/usr/lib64/dri/swrast_dri.so") if os.path.exists(p)]
    assert found, "Mesa's software rasterizer (swrast_dri.so, Debian libgl1-mesa-dri) is not installed"
    return found[0]


@pytest.mark.parametrize("name", sorted(DEPS))
def test_each_hidden_dependency_is_named_with_its_packages(name, tmp_path):
    hidden = hide(name, tmp_path)
    done = run_hidden([SYSTEM_PYTHON, "sysdeps/ensure.py", "test", "--check"], **hidden)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"  {name} ({' '.join(DEPS[name]['packages'])}): {DEPS[name]['for']}" in done.stderr
    assert f"apt-get install -y --no-install-recommends {' '.join(DEPS[name]['packages'])}" in done.stderr
    others = [other for other in DEPS if other != name and f"  {other} (" in done.stderr]
    assert not others, f"hiding {name} reported {others} missing too:\n{done.stderr}"


def test_egl_check_needs_a_working_display_not_only_libraries(tmp_path):
    done = run_hidden([SYSTEM_PYTHON, "sysdeps/ensure.py", "demo", "--check"], masked_files=[swrast_driver()])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no headless EGL display initialises" in done.stderr
    assert "libgl1-mesa-dri" in done.stderr


def test_a_check_left_out_of_the_list_misses_the_dependency(tmp_path):
    """The broken variant: an entry without its programs/libraries is not detected when hidden."""
    hidden = hide("espeak-ng", tmp_path)
    code = ("import sys; sys.path.insert(0, 'sysdeps'); import ensure, json; deps = json.loads(sys.argv[1]); "
            "print(sorted(ensure.missing('demo', deps)))")
    broken = copy.deepcopy(DEPS)
    broken["espeak-ng"].pop("programs"), broken["espeak-ng"].pop("libraries")
    import json

    for deps, expected in ((DEPS, "['espeak-ng']"), (broken, "[]")):
        done = run_hidden([SYSTEM_PYTHON, "-c", code, json.dumps(deps)], **hidden)
        assert done.stdout.strip() == expected, done.stderr


def test_everything_present_installs_nothing_and_needs_no_apt(tmp_path):
    env = dict(os.environ, PATH=path_without(tmp_path, {"apt-get", "apt", "sudo", "dpkg"}))
    done = subprocess.run([SYSTEM_PYTHON, "sysdeps/ensure.py", "test"], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "everything `make test` needs is present" in done.stdout


def test_not_root_without_sudo_stops_with_the_exact_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", path_without(tmp_path, {"espeak-ng", "sudo"}))
    deps = {"espeak-ng": {**DEPS["espeak-ng"], "libraries": []}}  # the program hidden by PATH is enough here
    assert ensure.ensure("demo", deps=deps, as_root=False) == 2
    err = capsys.readouterr().err
    assert "not root and `sudo -n` does not work" in err
    assert "apt-get update && apt-get install -y --no-install-recommends espeak-ng" in err
    assert DEPS["espeak-ng"]["for"] in err


def test_make_demo_stops_before_the_python_install(tmp_path):
    """Missing espeak-ng and no apt-get: `make demo` stops at the check, and no virtual environment is made."""
    venv = tmp_path / "venv"
    # a make of its own, not a sub-make of `make test` (which would pass its flags and announce directories)
    outer = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    env = dict(outer, PATH=path_without(tmp_path, {"espeak-ng", "apt-get"}))
    done = subprocess.run(["make", "demo", f"VENV={venv}", f"PYTHON={SYSTEM_PYTHON}"], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode != 0
    assert "apt-get is not on PATH" in done.stderr and "espeak-ng" in done.stderr
    assert not venv.exists()
    plan = subprocess.run(["make", "-n", "demo", f"VENV={venv}"], capture_output=True, text=True, env=outer,
                          cwd=REPO).stdout
    assert plan.splitlines()[0].endswith("sysdeps/ensure.py demo"), plan


def test_demo_corpus_without_libespeak_names_the_package(tmp_path):
    code = ("from datamodules.demo.build import build_demo_corpus; "
            f"build_demo_corpus({str(tmp_path / 'corpus')!r}, speakers=1, sentences=1, progress=False)")
    done = run_hidden([sys.executable, "-c", code], masked_files=[library_path("libespeak-ng.so.1")])
    assert done.returncode != 0
    assert "espeak-ng is not installed" in done.stderr and "apt-get install espeak-ng" in done.stderr
    assert "failed to synthesise" not in done.stderr


def test_speech_without_voice_data_names_the_package():
    data = os.path.join(os.path.dirname(library_path("libespeak-ng.so.1")), "espeak-ng-data")
    code = "from datamodules.demo.speech import synthesize; synthesize('hello there')"
    done = run_hidden([sys.executable, "-c", code], masked_dirs=[data])
    assert done.returncode != 0
    assert "espeak-ng's voice data is not installed" in done.stderr, done.stderr[-2000:]


def test_rig_renderer_without_mesa_names_the_packages():
    code = "from rendering.gl_renderer import create_context; create_context()"
    done = run_hidden([sys.executable, "-c", code], masked_files=[swrast_driver()])
    assert done.returncode != 0
    assert "EGLUnavailableError" in done.stderr
    assert "apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri libgl1" in done.stderr


def test_local_slurm_without_slurm_names_the_packages(tmp_path):
    env = dict(os.environ, PATH=path_without(tmp_path, set(DEPS["slurm"]["programs"])))
    done = subprocess.run([str(REPO / "slurm" / "local" / "start.sh"), str(tmp_path / "state")], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert "slurmctld is not installed" in done.stderr and "apt-get install slurm-wlm munge" in done.stderr


def test_browser_check_without_chromium_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", path_without(tmp_path, set(DEPS["chromium"]["any_program"])))
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"):
        chromium()
