"""Real material for the user-study tests: small MP4s with speech-like audio per method and clip, a study created
through `dtl study`, and a real uvicorn server on a free local port."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

from dtl_foundation.media.video_write import write_video
from port_helpers import free_port

FPS = 25
SAMPLE_RATE = 16000


def syllable_audio(path: Path, seconds: float, seed: int) -> Path:
    """A voiced-speech stand-in: a 140 Hz harmonic tone switched on and off in syllables of random length."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = np.zeros_like(t)
    start = 0.1
    while start < seconds - 0.2:
        length = rng.uniform(0.12, 0.3)
        envelope[(t >= start) & (t < start + length)] = 1.0
        start += length + rng.uniform(0.08, 0.2)
    tone = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6))
    sf.write(path, (0.25 * envelope * tone).astype(np.float32), SAMPLE_RATE)
    return path


def talking_frames(audio: np.ndarray, colour: tuple[int, int, int], size: int = 64) -> np.ndarray:
    """A face-coloured square whose dark mouth opens with the audio's loudness in each video frame."""
    per_frame = SAMPLE_RATE // FPS
    frames = np.zeros((len(audio) // per_frame, size, size, 3), np.uint8)
    frames[:] = colour
    for i in range(len(frames)):
        loudness = np.abs(audio[i * per_frame:(i + 1) * per_frame]).mean()
        opening = int(2 + 40 * loudness)
        frames[i, 40:40 + min(opening, 20), 20:44] = (40, 10, 10)
    return frames


def make_methods(root: Path, methods: dict[str, tuple[int, int, int]], clips: list[str],
                 seconds: float = 1.6) -> dict[str, Path]:
    """One folder of MP4s per method (same clip names, same speech per clip, a different look per method)."""
    folders = {}
    speech = root / "speech"
    speech.mkdir(parents=True, exist_ok=True)
    for i, clip in enumerate(clips):
        syllable_audio(speech / f"{clip}.wav", seconds, seed=i)
    for name, colour in methods.items():
        folder = root / name
        for clip in clips:
            audio, _ = sf.read(speech / f"{clip}.wav", dtype="float32")
            write_video(folder / f"{clip}.mp4", talking_frames(audio, colour), FPS, speech / f"{clip}.wav")
        folders[name] = folder
    return folders


@contextmanager
def running_server(app, root_path: str = ""):
    """A real uvicorn server of `app` in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, root_path=root_path, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the study server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def create_study(root: Path, name: str, folders: dict[str, Path], participants: int, *, design: str = "2afc",
                 criteria: tuple[str, ...] = ("lip_sync", "realism"), attention_checks: int = 1, db: str | None = None,
                 base_url: str = "http://127.0.0.1:8000", reference: Path | None = None) -> dict:
    """`dtl study create` through the CLI; the study folder, database URL, participant tokens and admin token."""
    import csv

    from experiments.study.cli import main as study_main
    from experiments.study.database import database_url

    out = root / name
    args = ["create", name, *[f"{m}={f}" for m, f in folders.items()], "--design", design, "--criteria", *criteria,
            "--participants", str(participants), "--attention-checks", str(attention_checks), "--out", str(out),
            "--base-url", base_url]
    if db:
        args += ["--db", db]
    if reference:
        args += ["--reference", str(reference)]
    assert study_main(args) == 0
    with open(out / "links.csv") as f:
        links = [row["link"] for row in csv.DictReader(f)]
    return {"out": out, "db": db or database_url(out), "links": links,
            "tokens": [link.rsplit("/", 1)[1] for link in links],
            "admin": (out / "admin_token").read_text().strip()}


@contextmanager
def serve_process(db: str, root_path: str = ""):
    """`dtl study serve` as its own process (what a lab runs); yields its base URL once it answers."""
    import os
    import subprocess
    import sys

    import httpx

    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "experiments.cli", "study", "serve", "--db", db, "--port",
                                str(port), "--root-path", root_path], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"dtl study serve exited:\n{process.stdout.read()}"
            assert time.monotonic() < deadline, "dtl study serve did not answer within 60 s"
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def simulate_participants(base: str, tokens: list[str], replay_every: int = 3, seed: int = 0) -> dict:
    """Every participant at once (one thread each): consent, then answer each trial as the state offers it, sending
    every `replay_every`-th answer twice (a double click). Returns the answers sent per token, each request's
    latency in seconds, the wall time and any error."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    def participant(index: int, token: str) -> tuple[str, dict[int, dict], list[float]]:
        rng = np.random.default_rng([seed, index])
        sent, latencies = {}, []
        with httpx.Client(base_url=base, timeout=60) as client:
            def call(method: str, path: str, **kwargs) -> dict:
                start = time.perf_counter()
                response = client.request(method, f"/api/p/{token}{path}", **kwargs)
                latencies.append(time.perf_counter() - start)
                assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
                return response.json()

            state = call("POST", "/consent", json={"agree": True})
            while state["trial"] is not None:
                trial = state["trial"]
                body = {"trial": trial["trial"]}
                body.update({"choice": int(rng.integers(0, 2))} if trial["type"] == "choice"
                            else {"rating": int(rng.integers(1, 6))})
                result = call("POST", "/answers", json=body)
                assert result["stored"], f"a first answer was not stored: {body}"
                if len(sent) % replay_every == 0:
                    replayed = call("POST", "/answers", json=body)
                    assert not replayed["stored"], f"a replayed answer was stored again: {body}"
                sent[trial["trial"]] = body
                state = result["state"]
        return token, sent, latencies

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        results = list(pool.map(lambda item: participant(*item), enumerate(tokens)))
    wall = time.perf_counter() - start
    return {"sent": {token: sent for token, sent, _ in results},
            "latencies": [s for _, _, latencies in results for s in latencies], "wall_s": wall}


@contextmanager
def prefix_proxy(target: str, prefix: str):
    """A reverse proxy serving `target` under the URL prefix `prefix` (stripped before forwarding), as a lab's
    nginx `location /prefix/ { proxy_pass http://127.0.0.1:PORT/; }` does; yields the proxy's base URL."""
    import http.client
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import urlsplit

    host = urlsplit(target)
    hop_by_hop = {"connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"}

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            if not self.path.startswith(prefix + "/"):
                self.send_error(404)
                return
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            upstream = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in hop_by_hop}
            upstream.request(self.command, self.path[len(prefix):], body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in hop_by_hop | {"content-length", "date", "server"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the browser dropped a video request it no longer needs
                self.close_connection = True
            upstream.close()

        do_GET = do_POST = do_PUT = _forward

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{prefix}"
    finally:
        server.shutdown()
        server.server_close()
