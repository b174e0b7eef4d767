"""Headless Debian Chromium for the report tests: a screenshot of a local HTML file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def chromium() -> str:
    path = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if path is None:
        pytest.fail("chromium is not installed (none of chromium, chromium-browser, google-chrome on PATH): "
                    "apt-get install chromium, or run make test, which installs it")
    return path


def screenshot(html_path: Path, png: Path) -> np.ndarray:
    done = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={png.parent / (png.stem + '-profile')}", f"--screenshot={png}",
                           "--window-size=1400,1000", html_path.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert png.is_file(), f"chromium wrote no screenshot:\n{done.stderr[-3000:]}"
    return np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
