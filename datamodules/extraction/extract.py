"""`dtl data extract`: ARKit tracks for every video of a MEAD-layout corpus, resumable, parallel, in shards.

Per clip <ID>/video/<view>/<emotion>/level_<k>/<NNN>.mp4 it writes, under the output root (the corpus itself
by default): <ID>/arkit/.../<NNN>.npy (T, 52) in Apple order at `fps` (what the corpus scanner reads),
<ID>/head_pose/.../<NNN>.npy (T, 6) (yaw, pitch, roll degrees; tx, ty, tz metres, rendering.gl_renderer's
convention) and, on request, <ID>/livelink/.../<NNN>.csv (Live Link Face CSV; a separate tree because a second
track file beside the .npy would be a duplicate to the scanner). Book-keeping lives in <out>/extraction/: one
JSON record per clip (clips/), cached landmarks (landmarks/), per-speaker face shapes (speakers/) and a
summary per run or shard. A clip counts as done when its record says so and its track loads with the recorded
frame count; every file is written atomically, so a killed run leaves no partial output and resumes with the
same command.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm import tqdm

from datamodules.extraction.books import (
    BACKENDS,
    SPEAKER_SHAPE_CLIPS,
    ClipFailure,
    ClipVideo,
    ExtractError,
    ExtractOptions,
    csv_path,
    find_videos,
    is_done,
    landmarks_path,
    pose_path,
    prior_sha256,
    read_record,
    record_path,
    select,
    speaker_path,
)
from datamodules.extraction.expression_prior import ExpressionPrior, PriorError
from datamodules.extraction.face_track import FaceTracker, to_camera_pixels
from datamodules.extraction.landmark_fit import FitError, fit_landmarks, fit_speaker
from datamodules.extraction.mediapipe_backend import MediaPipeBackend, MediaPipeUnavailableError
from datamodules.extraction.quality import ClipQuality, clip_quality
from datamodules.tracks import DEFAULT_FPS, read_corpus_info
from dtl_foundation.arkit import NPY_ORDER
from dtl_foundation.arkit_live_link import LiveLinkTrack, timecode_rate, write_live_link_csv
from dtl_foundation.atomic_files import atomic_save_npy, atomic_save_npz, atomic_write_text
from dtl_foundation.mead import CORPUS_INFO_FILE
from dtl_foundation.media.video_read import VideoReadError, read_frames
from rendering.rig_landmarks import default_calibration

log = logging.getLogger(__name__)


# --- the work of one process ----------------------------------------------------------------------------------

_STATE: dict = {}


def _worker_state(options: ExtractOptions) -> dict:
    """Per-process models: the rig calibration, the face tracker and the expression prior, if any (fit), or
    MediaPipe (mediapipe)."""
    key = (options.backend, options.calibration_size, options.cache_dir, options.model, options.prior)
    if _STATE.get("key") != key:
        import torch

        _STATE.clear()
        _STATE["key"] = key
        torch.set_num_threads(1)
        if options.backend == "fit":
            _STATE["calibration"] = default_calibration(options.calibration_size, options.cache_dir)
            _STATE["tracker"] = FaceTracker()
            _STATE["prior"] = load_prior(options)
        else:
            _STATE["mediapipe"] = MediaPipeBackend(options.model, options.model_sha256)
    return _STATE


def load_prior(options: ExtractOptions):
    """The ExpressionPrior of --prior (None without one); an unreadable file is an ExtractError naming it."""
    if options.prior is None:
        return None
    try:
        return ExpressionPrior.load(options.prior)
    except PriorError as e:
        raise ExtractError(f"--prior: {e}") from None


def _decode(clip: ClipVideo, fps: float) -> np.ndarray:
    try:
        return read_frames(clip.video, fps)
    except VideoReadError as e:
        raise ClipFailure("unreadable", str(e)) from None


def clip_landmarks(options: ExtractOptions, clip: ClipVideo) -> tuple[np.ndarray, np.ndarray]:
    """(T, 68, 2) landmarks in the calibration camera's pixels (NaN without a face) and (T,) detector hits,
    from the cache or by decoding and tracking the video."""
    path = landmarks_path(options, clip)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                if float(data["fps"]) == options.fps:
                    return data["landmarks"], data["detected"]
        except (OSError, KeyError, ValueError, EOFError):
            pass
    state = _worker_state(options)
    frames = _decode(clip, options.fps)
    tracked = state["tracker"].track(frames)
    landmarks = to_camera_pixels(tracked.landmarks, tracked.size, state["calibration"].size)
    atomic_save_npz(path, landmarks=landmarks, detected=tracked.detected, fps=np.array(options.fps))
    return landmarks, tracked.detected


def speaker_shape(options: ExtractOptions, speaker: str, clips: list[ClipVideo]) -> dict:
    """Fit (or read) the face shape of a speaker on up to SPEAKER_SHAPE_CLIPS of their clips, neutral first."""
    path = speaker_path(options, speaker)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                return {"identity": data["identity"], "offset": data["offset"], "clips": list(data["clips"])}
        except (OSError, KeyError, ValueError, EOFError):
            pass
    state = _worker_state(options)
    ordered = sorted(clips, key=lambda c: (c.key.emotion != "neutral", c.clip_id))
    used, tracks = [], []
    for clip in ordered:
        if len(used) == SPEAKER_SHAPE_CLIPS:
            break
        try:
            landmarks, _ = clip_landmarks(options, clip)
        except ClipFailure:
            continue
        seen = np.isfinite(landmarks).all(axis=(1, 2))
        if seen.mean() >= options.min_face_share and len(landmarks) >= options.min_frames:
            used.append(clip.clip_id)
            tracks.append(landmarks)
    if not tracks:
        return {"identity": None, "offset": None, "clips": []}
    try:
        identity, offset = fit_speaker(tracks, state["calibration"], device=options.device)
    except FitError:
        return {"identity": None, "offset": None, "clips": []}
    atomic_save_npz(path, identity=identity, offset=offset, clips=np.array(used))
    return {"identity": identity, "offset": offset, "clips": used}


def _fit_clip(options: ExtractOptions, clip: ClipVideo, shape: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    state = _worker_state(options)
    landmarks, detected = clip_landmarks(options, clip)
    face = np.isfinite(landmarks).all(axis=(1, 2))
    _check_clip(len(landmarks), face, options)
    try:
        fit = fit_landmarks(landmarks, state["calibration"], device=options.device,
                            identity=shape.get("identity"), offset=shape.get("offset"), prior=state["prior"])
    except FitError as e:
        raise ClipFailure("no_face", f"{clip.video}: {e}") from None
    quality = clip_quality(fit.coeffs, face, fit.normalised_residual, landmarks, fit.interocular)
    extra = {"detected_share": float(np.mean(detected)), "speaker_shape_from": shape.get("clips", [])}
    return fit.coeffs, fit.poses, {"quality": quality.as_dict(), **extra}


def _mediapipe_clip(options: ExtractOptions, clip: ClipVideo) -> tuple[np.ndarray, np.ndarray, dict]:
    frames = _decode(clip, options.fps)
    coeffs, poses, face = _worker_state(options)["mediapipe"].extract(frames, options.fps)
    _check_clip(len(frames), face, options)
    return coeffs, poses, {"quality": clip_quality(coeffs, face).as_dict()}


def _check_clip(frames: int, face: np.ndarray, options: ExtractOptions) -> None:
    if frames < options.min_frames:
        raise ClipFailure("too_short", f"{frames} frames at {options.fps:g} fps; need at least {options.min_frames}")
    share = float(np.mean(face))
    if share < options.min_face_share:
        raise ClipFailure("no_face", f"a face on {share:.0%} of {frames} frames; need {options.min_face_share:.0%}")


def extract_clip(options: ExtractOptions, clip: ClipVideo, shape: dict | None = None) -> dict:
    """Extract one clip and write its outputs and record; returns the record (status ok or failed)."""
    start = time.perf_counter()
    record = {"clip_id": clip.clip_id, "video": str(clip.video), "backend": options.backend, "fps": options.fps,
              "prior": None if options.prior is None else str(options.prior), "prior_sha256": prior_sha256(options)}
    try:
        if options.backend == "fit":
            coeffs, poses, extra = _fit_clip(options, clip, shape or {})
        else:
            coeffs, poses, extra = _mediapipe_clip(options, clip)
        atomic_save_npy(pose_path(options, clip.key), poses.astype(np.float32))
        if options.csv:
            pose9 = np.zeros((len(coeffs), 9), np.float32)
            pose9[:, :3] = np.radians(poses[:, :3])  # HeadYaw, HeadPitch, HeadRoll in radians
            write_live_link_csv(csv_path(options, clip.key), LiveLinkTrack(coeffs, options.fps, pose9))
        atomic_save_npy(clip.key.track_path(options.out), np.ascontiguousarray(coeffs, dtype=np.float32))
        reasons = options.thresholds.failures(_quality_from(extra["quality"]))
        record.update(status="ok", frames=int(len(coeffs)), below_quality=reasons, **extra)
    except ClipFailure as e:
        record.update(status="failed", kind=e.kind, problem=e.problem)
    except Exception as e:  # noqa: BLE001  (a clip must not stop the corpus: reported with its traceback)
        record.update(status="failed", kind="error", problem=f"{type(e).__name__}: {e}",
                      traceback=traceback.format_exc(limit=5))
    record["seconds"] = round(time.perf_counter() - start, 3)
    atomic_write_text(record_path(options, clip), json.dumps(record, indent=1))
    return record


def _quality_from(values: dict):
    return ClipQuality(**{k: (float("nan") if v is None else v) for k, v in values.items()})


def _speaker_job(options: ExtractOptions, speaker: str, clips: list[ClipVideo]) -> tuple[str, dict]:
    return speaker, speaker_shape(options, speaker, clips)


def _clip_job(options: ExtractOptions, clip: ClipVideo, shape: dict | None) -> dict:
    return extract_clip(options, clip, shape)


# --- the corpus loop ------------------------------------------------------------------------------------------

def remove_stale_temporaries(options: ExtractOptions) -> int:
    """Delete the hidden temporary files (.NAME.XXXX.tmp) that a killed run's atomic writes left behind."""
    removed = 0
    for tree in ("arkit", "head_pose", "livelink"):
        for path in options.out.glob(f"*/{tree}/*/*/.*.tmp"):
            path.unlink(missing_ok=True)
            removed += 1
    if options.books().is_dir():
        for path in options.books().glob("*/.*.tmp"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _check_fps_info(options: ExtractOptions) -> None:
    """The output root's CORPUS.json must not give the .npy tracks another rate or column order (it states the order);
    Live Link CSVs need a rate with a timecode."""
    if options.csv:
        try:
            timecode_rate(options.fps)
        except ValueError as e:
            raise ExtractError(f"--csv: {e}") from None
    info = read_corpus_info(options.out)
    if "fps" in info and float(info["fps"]) != options.fps:
        raise ExtractError(f"{options.out / CORPUS_INFO_FILE} says the tracks are at {info['fps']} fps but "
                           f"--fps is {options.fps:g}; extract at {info['fps']} or into another --out")
    if info.get("arkit_order", NPY_ORDER) != NPY_ORDER:
        raise ExtractError(f"{options.out / CORPUS_INFO_FILE} says the .npy tracks are in {info['arkit_order']!r} "
                           f"order but extraction writes {NPY_ORDER!r} order; extract into another --out")
    stated = {**info, "arkit_order": NPY_ORDER}
    if "fps" not in info and options.fps != DEFAULT_FPS:
        stated["fps"] = options.fps
    if stated != info:
        atomic_write_text(options.out / CORPUS_INFO_FILE, json.dumps(stated, indent=2))


@dataclass
class ExtractReport:
    clips: int = 0
    extracted: int = 0
    skipped_done: int = 0
    failed: list[dict] = field(default_factory=list)
    below_quality: list[dict] = field(default_factory=list)
    layout_problems: list[dict] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0


def run_extraction(options: ExtractOptions) -> ExtractReport:
    """Extract this shard's clips of the corpus; writes <out>/extraction/summary[.shard-K-of-N].json."""
    if options.backend not in BACKENDS:
        raise ExtractError(f"unknown backend {options.backend!r}; choose one of {BACKENDS}")
    if options.prior is not None and options.backend != "fit":
        raise ExtractError(f"--prior is for the fit backend, not {options.backend}")
    start = time.perf_counter()
    clips, problems = find_videos(options.corpus, options.view)
    if not clips:
        raise ExtractError(f"{options.corpus}: no videos under <ID>/video/{options.view}/<emotion>/level_<k>/")
    options.out.mkdir(parents=True, exist_ok=True)
    _check_fps_info(options)
    removed = remove_stale_temporaries(options)
    if removed:
        log.info("removed %d temporary files left by an interrupted run", removed)
    if options.backend == "fit":  # calibrate once here, so that the workers only read the cached calibration
        load_prior(options)  # a bad prior file fails here, before any clip
        default_calibration(options.calibration_size, options.cache_dir)
    else:  # fail fast with the model or package error, before any worker starts
        try:
            _worker_state(options)
        except MediaPipeUnavailableError as e:
            raise ExtractError(str(e)) from e
    mine = select(clips, options.shard, options.limit)
    report = ExtractReport(clips=len(mine), layout_problems=problems)
    todo = [c for c in mine if not is_done(options, c)]
    report.skipped_done = len(mine) - len(todo)
    shapes: dict[str, dict] = {}
    if options.backend == "fit" and todo:
        speakers = sorted({c.key.speaker for c in todo})
        by_speaker = {s: [c for c in clips if c.key.speaker == s] for s in speakers}
        for speaker, shape in _run(options, _speaker_job, [(options, s, by_speaker[s]) for s in speakers],
                                   "speaker shapes", "speaker"):
            shapes[speaker] = shape
    for record in _run(options, _clip_job, [(options, c, shapes.get(c.key.speaker)) for c in todo],
                       f"extract {options.backend}", "clip"):
        if record["status"] == "ok":
            report.extracted += 1
            report.frames += record["frames"]
    for clip in mine:  # the summary covers the whole shard, the clips of earlier runs included
        record = read_record(options, clip) or {"clip_id": clip.clip_id, "status": "missing"}
        if record.get("status") != "ok":
            report.failed.append({k: record.get(k) for k in ("clip_id", "video", "kind", "problem")})
        elif record.get("below_quality"):
            report.below_quality.append({"clip_id": clip.clip_id, "reasons": record["below_quality"],
                                         "quality": record.get("quality")})
    report.seconds = time.perf_counter() - start
    k, n = options.shard
    name = "summary.json" if n == 1 else f"summary.shard-{k}-of-{n}.json"
    summary = {**asdict(report), "thresholds": asdict(options.thresholds), "backend": options.backend,
               "fps": options.fps, "view": options.view, "corpus": str(options.corpus), "out": str(options.out),
               "prior": None if options.prior is None else str(options.prior),
               "failures_by_kind": _count(report.failed)}
    atomic_write_text(options.books() / name, json.dumps(summary, indent=1))
    return report


def _count(failed: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in failed:
        counts[f.get("kind") or "missing"] = counts.get(f.get("kind") or "missing", 0) + 1
    return counts


def _run(options: ExtractOptions, fn, jobs: list[tuple], desc: str, unit: str):
    """Yield fn(*job) for every job, in worker processes when options.workers > 1, with a progress bar."""
    bar = tqdm(total=len(jobs), desc=desc, unit=unit, disable=not options.progress or not jobs)
    try:
        if options.workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield fn(*job)
                bar.update()
            return
        import multiprocessing

        # spawn: the parent has run torch and dlib already, and forking a process with their threads can hang
        with ProcessPoolExecutor(max_workers=options.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(fn, *job) for job in jobs]):
                yield future.result()
                bar.update()
    finally:
        bar.close()
