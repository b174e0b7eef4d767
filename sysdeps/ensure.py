"""Check the system packages of sysdeps/debian.toml by what they provide; install what is missing with apt-get.

    python3 sysdeps/ensure.py demo|test [--check]

Runs with the system's python3 (standard library only), before any virtual environment exists. As root it
installs with apt-get; not root but `sudo -n` works, through sudo; otherwise it stops with the exact command
to run and why each package is needed. `--check` never installs. Exit status: 0 all present, 1 missing
(--check), 2 missing and not installable from here, 3 still missing after apt-get.
"""

from __future__ import annotations

import argparse
import glob
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

LIST = Path(__file__).with_name("debian.toml")

# A headless EGL display through Mesa's surfaceless platform (no X, no GPU), else the default display (a GPU
# driver's). Run in a child so that a broken driver cannot take the checker down.
_EGL_PROBE = """
import ctypes, sys
egl = ctypes.CDLL("libEGL.so.1")
egl.eglGetProcAddress.restype = ctypes.c_void_p
egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
egl.eglGetDisplay.restype = ctypes.c_void_p
egl.eglInitialize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
displays = []
address = egl.eglGetProcAddress(b"eglGetPlatformDisplayEXT")
if address:
    get_platform_display = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p)(address)
    displays.append(get_platform_display(0x31DD, None, None))  # EGL_PLATFORM_SURFACELESS_MESA
displays.append(egl.eglGetDisplay(None))
sys.exit(0 if any(d and egl.eglInitialize(d, None, None) for d in displays) else 1)
"""


def load(path: Path = LIST) -> dict[str, dict]:
    with open(path, "rb") as f:
        return tomllib.load(f)


def _loads(library: str) -> bool:
    code = f"import ctypes; ctypes.CDLL({library!r})"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def _egl_works() -> bool:
    return subprocess.run([sys.executable, "-c", _EGL_PROBE], capture_output=True).returncode == 0


def problems(entry: dict) -> list[str]:
    """What of `entry` is absent, in words; empty when everything it should provide is there."""
    found = [f"program {p} not on PATH" for p in entry.get("programs", []) if shutil.which(p) is None]
    if "any_program" in entry and not any(shutil.which(p) for p in entry["any_program"]):
        found.append(f"none of the programs {', '.join(entry['any_program'])} on PATH")
    found += [f"library {lib} does not load" for lib in entry.get("libraries", []) if not _loads(lib)]
    if entry.get("egl") and not found and not _egl_works():
        found.append("no headless EGL display initialises (Mesa's EGL and software rasterizer)")
    found += [f"file {f} missing" for f in entry.get("files", []) if not glob.glob(f)]
    return found


def missing(purpose: str, deps: dict[str, dict]) -> dict[str, list[str]]:
    return {name: found for name, entry in deps.items()
            if purpose in entry["needed_by"] and (found := problems(entry))}


def install_command(packages: list[str], *, as_root: bool) -> list[str]:
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    return command if as_root else ["sudo", "-n", *command]


def _sudo_works() -> bool:
    return shutil.which("sudo") is not None and subprocess.run(
        ["sudo", "-n", "true"], capture_output=True).returncode == 0


def _explain(absent: dict[str, list[str]], deps: dict[str, dict]) -> str:
    lines = [f"  {name} ({' '.join(deps[name]['packages'])}): {deps[name]['for']}\n"
             f"      absent here: {'; '.join(found)}" for name, found in absent.items()]
    return "\n".join(lines)


# another apt or dpkg at work (unattended upgrades, a second make) holds dpkg's lock: wait for it, not fail
_WAIT_FOR_LOCK = ["-o", "DPkg::Lock::Timeout=600", "-qq"]


def _apt(command: list[str]) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    prefix = command[:command.index("apt-get")]
    print(f"sysdeps: {shlex.join(prefix + ['apt-get', 'update'])}", flush=True)
    subprocess.run(prefix + ["apt-get", "update", *_WAIT_FOR_LOCK], env=env, check=True)
    print(f"sysdeps: {shlex.join(command)}", flush=True)
    subprocess.run([*command, *_WAIT_FOR_LOCK], env=env, check=True)


def ensure(purpose: str, *, check_only: bool = False, deps: dict[str, dict] | None = None,
           as_root: bool | None = None) -> int:
    deps = load() if deps is None else deps
    as_root = os.geteuid() == 0 if as_root is None else as_root
    absent = missing(purpose, deps)
    if not absent:
        print(f"sysdeps: everything `make {purpose}` needs is present ({', '.join(sorted(deps))} checked)")
        return 0
    packages = [p for name in absent for p in deps[name]["packages"]]
    command = install_command(packages, as_root=True)
    header = f"sysdeps: `make {purpose}` needs system packages that are missing:\n{_explain(absent, deps)}\n"
    if check_only:
        print(header + f"install them with: apt-get update && {shlex.join(command)}", file=sys.stderr)
        return 1
    if shutil.which("apt-get") is None or (not as_root and not _sudo_works()):
        why = "apt-get is not on PATH" if shutil.which("apt-get") is None else "not root and `sudo -n` does not work"
        print(header + f"Nothing was installed ({why}). As root, run:\n"
              f"    apt-get update && {shlex.join(command)}\n"
              f"then run `make {purpose}` again.", file=sys.stderr)
        return 2
    print(header + "installing them:", flush=True)
    try:
        _apt(install_command(packages, as_root=as_root))
    except subprocess.CalledProcessError as e:
        print(f"sysdeps: {shlex.join(e.cmd)} failed with exit status {e.returncode} (see its output above)",
              file=sys.stderr)
        return 3
    still = missing(purpose, deps)
    if still:
        print(f"sysdeps: still missing after apt-get:\n{_explain(still, deps)}", file=sys.stderr)
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("purpose", choices=["demo", "test"], help="what the packages are needed for")
    parser.add_argument("--check", action="store_true", help="only report what is missing; install nothing")
    args = parser.parse_args(argv)
    return ensure(args.purpose, check_only=args.check)


if __name__ == "__main__":
    sys.exit(main())
