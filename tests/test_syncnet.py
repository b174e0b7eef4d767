"""SyncNet LSE-C / LSE-D equal syncnet_python's on the same crops, audio and (seeded random) weights; bad input fails.

The oracle is the PyPI package syncnet-python 0.2.3 (joonson/syncnet_python's model and scorer). Its lowest-level
scorer that takes frames and audio is `SyncNetInstance.evaluate(opt)`: it reads opt.tmp_dir/*.jpg (OpenCV, BGR) and
opt.tmp_dir/audio.wav (scipy, int16), which is where its own pipeline leaves the face crops before scoring; the real
syncnet_v2.model cannot be had offline, so both models get the same seeded weights.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from scipy.io import wavfile
from syncnet_python.SyncNetInstance import SyncNetInstance, calc_pdist
from syncnet_python.SyncNetModel import S as ReferenceSyncNet
from syncnet_python.syncnet_pipeline import PipelineConfig, SyncNetPipeline
from talking_video import FACE_BOX, speak, talking_video, write_video

from dtl_foundation.media.face_crop import centre_crop_faces, crop_faces
from dtl_foundation.media.mfcc import syncnet_mfcc
from metrics.syncnet import (
    LipSyncError,
    SyncNet,
    SyncNetScorer,
    load_syncnet,
    offset_distances,
    pretrained_syncnet,
)
from dtl_foundation.media.video_read import VideoReadError, read_frames, read_video
from dtl_foundation.weights import REGISTRY, MissingWeightsError, WeightsError

TOLERANCE = 1e-4


def batch_norms(net: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@pytest.fixture(scope="module")
def speech_clip(tmp_path_factory):
    """About 1.2 s of espeak-ng speech with a drawn face, read back as SyncNet reads a video, and its crops."""
    directory = tmp_path_factory.mktemp("speech_clip")
    clip = read_video(talking_video(directory, "Hello, how are you?"))
    crops = crop_faces(clip.frames, np.tile(FACE_BOX, (len(clip.frames), 1)))
    return clip, crops


@pytest.fixture(scope="module")
def reference_input(speech_clip, tmp_path_factory):
    """The crops as JPEG files plus audio.wav (the reference's input), and the pixels OpenCV decodes from them (RGB)."""
    clip, crops = speech_clip
    directory = tmp_path_factory.mktemp("reference_input")
    for index, crop in enumerate(crops.permute(0, 2, 3, 1).numpy()):
        cv2.imwrite(str(directory / f"{index:06d}.jpg"), np.ascontiguousarray(crop[..., ::-1]))
    wavfile.write(directory / "audio.wav", 16000, clip.audio)
    decoded = np.stack([cv2.imread(str(path)) for path in sorted(directory.glob("*.jpg"))])
    return directory, torch.from_numpy(np.ascontiguousarray(decoded[..., ::-1])).permute(0, 3, 1, 2), clip.audio


@pytest.fixture(scope="module")
def reference_net(reference_input) -> ReferenceSyncNet:
    """The reference model, seeded, its batch norms calibrated on the clip so that every layer works at unit scale.

    (Default statistics leave the activations far from the trained network's scale; a train-mode pass over a few
    windows sets running mean and variance from the data, as a data-dependent initialisation would.)
    """
    _, frames, audio = reference_input
    torch.manual_seed(0)
    net = ReferenceSyncNet()
    for norm in batch_norms(net):
        norm.momentum = None  # cumulative average: one pass sets the statistics of that pass
    bgr = frames.flip(1).float()
    starts = torch.linspace(0, len(frames) - 6, 6).long()
    mfcc = torch.from_numpy(syncnet_mfcc(audio)).float()
    with torch.no_grad():
        net.train()
        net.forward_lip(torch.stack([bgr[s : s + 5].transpose(0, 1) for s in starts]))
        net.forward_aud(torch.stack([mfcc[None, :, 4 * s : 4 * s + 20] for s in range(len(frames) - 6)]))
    return net.eval()


@pytest.fixture(scope="module")
def our_net(reference_net) -> SyncNet:
    net = SyncNet()
    net.load_state_dict(reference_net.state_dict())  # carries num_batches_tracked, which ours ignores
    return net.eval()


def run_reference_evaluate(net: ReferenceSyncNet, directory: Path) -> tuple[int, float, float]:
    class Options:
        tmp_dir = str(directory)
        batch_size = 20
        vshift = 15

    with contextlib.redirect_stdout(io.StringIO()):  # it prints its framewise confidences
        return SyncNetInstance(net, device="cpu").evaluate(Options())


# ---------------------------------------------------------------- the network


def test_state_dict_has_syncnet_v2_keys_and_shapes():
    ours = {key: tuple(value.shape) for key, value in SyncNet().state_dict().items()}
    reference = {key: tuple(value.shape) for key, value in ReferenceSyncNet().state_dict().items()
                 if not key.endswith("num_batches_tracked")}
    assert ours == reference
    assert len(ours) == 88
    # syncnet_v2.model (54,573,114 bytes) holds these float32 tensors (54,561,024 bytes) plus pickle framing.
    assert sum(np.prod(shape) for shape in ours.values()) * 4 == 54_561_024
    assert ReferenceSyncNet().load_state_dict(SyncNet().state_dict()) is not None  # the reference loads ours strictly


def test_towers_equal_reference_forward(our_net, reference_net, reference_input):
    _, frames, audio = reference_input
    clips = frames[:9].flip(1).float().unfold(0, 5, 1).permute(0, 1, 4, 2, 3)[:3]  # (3, 3, 5, 224, 224) BGR windows
    mfcc = torch.randn(4, 1, 13, 20) * 30
    with torch.no_grad():
        reference_lips, reference_audio = reference_net.forward_lip(clips), reference_net.forward_aud(mfcc)
        lips, audio_embeddings = our_net.embed_lips(clips), our_net.embed_audio(mfcc)
    assert torch.allclose(lips, reference_lips, rtol=1e-4, atol=1e-4 * reference_lips.abs().max())
    assert torch.allclose(audio_embeddings, reference_audio, rtol=1e-4, atol=1e-4 * reference_audio.abs().max())
    # The scorer's folded 2-D lip tower gives the same embeddings on RGB crops and on BGR crops, in either layout.
    for channel_order, crops, channels_last in (("rgb", frames[:7], True), ("bgr", frames[:7].flip(1).float(), False)):
        scorer = SyncNetScorer(our_net, channel_order=channel_order, batch_size=2, channels_last=channels_last)
        folded = scorer.lip_embeddings(crops)
        assert torch.allclose(folded, reference_lips, rtol=1e-4, atol=1e-4 * reference_lips.abs().max())


def test_offset_distances_equal_reference_calc_pdist():
    generator = torch.Generator().manual_seed(3)
    lip, audio = torch.randn(40, 1024, generator=generator), torch.randn(40, 1024, generator=generator)
    reference = torch.stack(calc_pdist(lip, audio, vshift=15))  # (W, 31), one Python iteration per window
    assert torch.allclose(offset_distances(lip, audio, max_offset=15, chunk=16), reference, rtol=1e-6, atol=1e-5)


# ---------------------------------------------------------------- LSE parity


def test_lse_equals_reference_evaluate(our_net, reference_net, reference_input):
    directory, frames, audio = reference_input
    reference_offset, reference_confidence, reference_distance = run_reference_evaluate(reference_net, directory)
    ours = SyncNetScorer(our_net, channel_order="rgb", batch_size=16).score(frames, audio)

    # The input is not degenerate: the distances vary across offsets and the best offset stands out.
    spread = ours.mean_distances.max() - ours.mean_distances.min()
    first, second = ours.mean_distances.sort().values[:2]
    assert ours.lse_c > 0.05 and spread > 0.1 and second - first > 100 * TOLERANCE, ours
    assert ours.offset == reference_offset
    assert ours.lse_c == pytest.approx(reference_confidence, abs=TOLERANCE)
    assert ours.lse_d == pytest.approx(reference_distance, abs=TOLERANCE)
    assert ours.num_windows == min(len(frames), len(audio) // 640) - 5


def test_metric_averages_videos_and_merges_across_processes(our_net, reference_input):
    _, frames, audio = reference_input
    videos = [(frames[:9], audio[: 9 * 640]), (frames[9:18], audio[9 * 640 : 18 * 640])]  # 4 windows each
    scorer = SyncNetScorer(our_net)
    singles = [scorer.score(crops, track) for crops, track in videos]

    together = LipSyncError(weights=our_net)
    together.update([crops for crops, _ in videos], [track for _, track in videos])
    result = together.compute()
    assert float(result["lse_c"]) == pytest.approx(np.mean([s.lse_c for s in singles]), abs=1e-9)
    assert float(result["lse_d"]) == pytest.approx(np.mean([s.lse_d for s in singles]), abs=1e-9)

    # Two ranks' states, each holding one video, reduce (sum) to the same means.
    rank0, rank1 = LipSyncError(weights=our_net), LipSyncError(weights=our_net)
    rank0.update(*videos[0])
    rank1.update(torch.as_tensor(videos[1][0]), torch.as_tensor(videos[1][1]))
    assert set(rank0._reductions) == {"lse_c_sum", "lse_d_sum", "num_videos"}
    rank0.merge_state(rank1)
    merged = rank0.compute()
    assert float(merged["lse_c"]) == pytest.approx(float(result["lse_c"]), abs=1e-9)
    assert float(merged["lse_d"]) == pytest.approx(float(result["lse_d"]), abs=1e-9)
    assert int(rank0.num_videos) == 2


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_scorer_rejects_unusable_input(our_net, reference_input):
    _, frames, audio = reference_input
    scorer = SyncNetScorer(our_net)
    with pytest.raises(ValueError, match="too short for SyncNet"):
        scorer.score(frames[:5], audio)
    with pytest.raises(ValueError, match="0-255 scale"):
        scorer.score(frames.float() / 255, audio)
    with pytest.raises(ValueError, match=r"\(T, 3, 224, 224\)"):
        scorer.score(frames[:, :, :112, :112], audio)
    with pytest.raises(RuntimeError, match="before any update"):
        LipSyncError(weights=our_net).compute()


# ---------------------------------------------------------------- weights


def test_pretrained_weights_missing_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "syncnet_v2.model"
    assert REGISTRY["syncnet_v2"].path == expected
    with pytest.raises(MissingWeightsError, match=str(expected)):
        pretrained_syncnet()
    with pytest.raises(MissingWeightsError, match="syncnet_v2.model"):
        LipSyncError()


def test_load_syncnet_reads_the_legacy_state_dict_format(tmp_path, reference_net):
    state = {k: v for k, v in reference_net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "syncnet_v2.model"
    torch.save(state, path, _use_new_zipfile_serialization=False)  # the 2018 file predates the zip format
    loaded = load_syncnet(path).state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)

    partial = tmp_path / "partial.model"
    torch.save({k: v for k, v in state.items() if not k.startswith("netcnnlip")}, partial)
    with pytest.raises(WeightsError, match=rf"(?s){partial}.*Missing key.*netcnnlip\.0\.weight"):
        load_syncnet(partial)
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=str(garbage)):
        load_syncnet(garbage)


# ---------------------------------------------------------------- video reading


def test_read_video_gives_25_fps_frames_and_16k_int16_audio(speech_clip, tmp_path):
    clip, _ = speech_clip
    assert clip.frames.dtype == np.uint8 and clip.frames.shape[1:] == (256, 256, 3)
    assert clip.audio.dtype == np.int16 and clip.sample_rate == 16000
    assert abs(clip.duration_mismatch_s) < 0.1
    # A 30 fps clip of 2 s is re-timed to 50 frames.
    frames = np.repeat(np.linspace(0, 255, 60).astype(np.uint8)[:, None, None, None], 48 * 64 * 3, 1)
    path = write_video(tmp_path / "thirty.mp4", frames.reshape(60, 48, 64, 3), fps=30)
    assert read_frames(path).shape == (50, 48, 64, 3)


def test_unreadable_video_error_names_the_file(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x01 this is not a video")
    with pytest.raises(VideoReadError, match=rf"{broken}: unreadable video \(.*Invalid data"):
        read_video(broken)
    with pytest.raises(VideoReadError, match=rf"{tmp_path / 'absent.mp4'}: no such file"):
        read_video(tmp_path / "absent.mp4")
    speech = speak("hello", tmp_path / "speech.wav")
    with pytest.raises(VideoReadError, match=rf"{speech}: no video stream"):
        read_video(speech)


def test_video_without_audio_error_names_the_file(tmp_path):
    silent = write_video(tmp_path / "silent.mp4", np.full((10, 32, 32, 3), 128, np.uint8))
    with pytest.raises(VideoReadError, match=rf"{silent}: no audio stream"):
        read_video(silent)


# ---------------------------------------------------------------- face crops


def test_crop_faces_equals_reference_crop(tmp_path, monkeypatch):
    """The reference's tracker interpolation (_track) and crop (_crop) on the same boxes, intercepting the crops it
    writes to its XVID video (lossy) so that they are compared before compression."""
    height, width, count = 180, 240, 20
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.stack([np.clip(np.stack([xx * 255 / width, yy * 255 / height, 128 + 100 * np.sin(xx / 9 + t / 3)
                                         * np.cos(yy / 7)], -1), 0, 255).astype(np.uint8) for t in range(count)])
    paths = []
    for index, frame in enumerate(frames):
        paths.append(str(tmp_path / f"{index:06d}.png"))
        cv2.imwrite(paths[-1], frame[..., ::-1])
    boxes = [[60 + t, 40 + 0.5 * t, 150 + t + (t % 3), 140 + 0.5 * t] for t in range(count)]
    missing = {4, 5, 11}  # frames without a detection, interpolated by both
    detections = [[] if t in missing else [{"frame": t, "bbox": boxes[t], "conf": 1.0}] for t in range(count)]
    wavfile.write(tmp_path / "audio.wav", 16000, np.zeros(16000, np.int16))

    class Pipeline(SyncNetPipeline):  # without the detector weights its __init__ loads: _track and _crop need none
        def __init__(self):
            self.cfg = PipelineConfig(ffmpeg_bin=imageio_ffmpeg.get_ffmpeg_exe(), min_track=5, min_face_size=50)

    written = []
    real_writer = cv2.VideoWriter

    class RecordingWriter:
        def __init__(self, *args):
            self.writer = real_writer(*args)

        def write(self, image):
            written.append(image.copy())
            self.writer.write(image)

        def release(self):
            self.writer.release()

    monkeypatch.setattr(cv2, "VideoWriter", RecordingWriter)
    pipeline = Pipeline()
    (track,) = pipeline._track(detections)
    pipeline._crop(track, paths, str(tmp_path / "audio.wav"), tmp_path / "crop")
    reference = torch.from_numpy(np.stack(written)[..., ::-1].copy()).permute(0, 3, 1, 2).int()

    ours = crop_faces(frames, [None if t in missing else boxes[t] for t in range(count)])
    assert ours.shape == (count, 3, 224, 224) and ours.dtype == torch.uint8
    difference = (ours.int() - reference).abs()
    assert difference.max() <= 1 and difference.float().mean() < 0.2  # OpenCV's fixed-point bilinear rounding
    shifted = crop_faces(frames, np.array(boxes) + [3, 0, 3, 0])
    assert (shifted.int() - reference).abs().float().mean() > 2  # a 3-pixel shift is far outside that


def test_centre_crop_faces_is_the_resized_central_square():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 300, 400, 3), dtype=np.uint8)
    crops = centre_crop_faces(frames)
    expected = np.stack([cv2.resize(frame[:, 50:350], (224, 224), interpolation=cv2.INTER_LINEAR) for frame in frames])
    assert crops.shape == (3, 3, 224, 224)
    assert (crops.permute(0, 2, 3, 1).int() - torch.from_numpy(expected).int()).abs().max() <= 1
    float_crops = centre_crop_faces(torch.from_numpy(frames).permute(0, 3, 1, 2).float())
    assert float_crops.dtype == torch.float32 and (float_crops - crops.float()).abs().max() <= 0.5


def test_crop_faces_rejects_bad_boxes():
    frames = np.zeros((4, 64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="no frame has a face box"):
        crop_faces(frames, [None] * 4)
    with pytest.raises(ValueError, match=r"one .* box per frame: \(4, 4\)"):
        crop_faces(frames, [[0, 0, 10, 10]] * 3)
    with pytest.raises(ValueError, match="right > left"):
        crop_faces(frames, [[10, 0, 5, 10]] * 4)
