"""Renderer fine-tuning (face-vid2vid GAN) on rendered talking videos of the demo corpus, through `dtl train`.

LPIPS here is the `lpips` package's AlexNet LPIPS with its shipped linear heads and a *seeded random* AlexNet backbone
(the ImageNet backbone is not obtainable offline); L1 is the plain mean absolute pixel error.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

SPEAKER = "M001"
CLIPS = [f"{SPEAKER}_happy_level_3_001", f"{SPEAKER}_angry_level_3_001", f"{SPEAKER}_surprised_level_3_001"]


@pytest.fixture(scope="module")
def one_thread():
    """2 cores shared by several jobs: one intra-op thread is ~10x faster than two fighting for them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def talking_corpus(tmp_path_factory) -> Path:
    """A 3-speaker demo corpus with rendered talking videos (256 px, head sway) of three of M001's clips."""
    from datamodules.demo.build import build_demo_corpus
    from datamodules.demo.videos import render_demo_videos

    root = build_demo_corpus(tmp_path_factory.mktemp("talking") / "corpus", speakers=3, sentences=1, progress=False)
    report = render_demo_videos(root, clip_ids=CLIPS, progress=False)
    assert report["rendered"] == len(CLIPS), report
    return root


def renderer_overrides(corpus: Path, out: Path, steps: int, extra: list[str] = ()) -> list[str]:
    return ["experiment=renderer_demo", "run_id=tune", f"paths.output_root={out}", f"data.corpus_dir={corpus}",
            f"paths.cache_dir={out}/cache", f"data.speakers=[{SPEAKER}]", "data.split_by=frames",
            "data.holdout_fraction=0.25", "data.eval_stride=2", "data.progress=false", "logger=csv", "test=false",
            "trainer.accelerator=cpu", f"trainer.max_steps={steps}", "trainer.limit_val_batches=4",
            "callbacks.progress_bar=null", *extra]


@pytest.fixture(scope="module")
def finetuned(talking_corpus, tmp_path_factory, one_thread) -> dict:
    """The tiny renderer fine-tuned for 40 generator steps on M001's videos (their first 75% of frames), without the
    head-pose loss: the baseline of the head-pose test, and the configuration of the mouth measurement's history."""
    import hydra

    from experiments.train import train
    from training_helpers import compose_train

    out = tmp_path_factory.mktemp("renderer")
    # Manual optimization: global_step counts both optimizers' steps, so 80 = 40 generator + 40 discriminator.
    cfg = compose_train(renderer_overrides(talking_corpus, out, 80, ["data.pairs_per_epoch=160", "data.batch_size=4",
                                                                     "model.loss_weights.head_pose=0"]))
    L.seed_everything(cfg.seed, workers=True)
    before = hydra.utils.instantiate(cfg.model).model.eval()  # the same construction and seed as train() uses
    start = time.perf_counter()
    metrics = train(cfg)
    seconds = time.perf_counter() - start
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("test")
    return {"cfg": cfg, "metrics": metrics, "before": before, "run_dir": out / "renderer_demo" / "tune",
            "datamodule": datamodule, "train_seconds": seconds}


def reconstruction_errors(model, loader) -> dict[str, float]:
    import lpips

    from metrics.lpips_metric import LPIPS

    torch.manual_seed(0)
    network = lpips.LPIPS(pretrained=True, net="alex", pnet_rand=True, verbose=False)  # heads from the wheel
    metric = LPIPS(weights=network, normalize=True)
    l1 = []
    with torch.no_grad():
        for batch in loader:
            prediction = model(batch["source"], batch["driving"])["prediction"]
            l1.append(float((prediction - batch["driving"]).abs().mean()) * len(prediction))
            metric.update(prediction, batch["driving"])
    return {"l1": sum(l1) / len(loader.dataset), "lpips": float(metric.compute())}


@pytest.mark.slow
def test_finetuning_reduces_held_out_reconstruction_error(finetuned):
    from lightning_modules.renderer_finetune import load_renderer

    trained = load_renderer(finetuned["run_dir"])
    loader = finetuned["datamodule"].test_dataloader()
    before = reconstruction_errors(finetuned["before"], loader)
    after = reconstruction_errors(trained.model, loader)
    print(f"held-out frames: {len(loader.dataset)}; before {before}; after {after}; "
          f"training {finetuned['train_seconds']:.0f} s")
    assert after["l1"] <= 0.7 * before["l1"]
    assert after["lpips"] <= 0.7 * before["lpips"]
    assert (finetuned["run_dir"] / "checkpoints" / "last.ckpt").is_file()
    assert "val/l1" in finetuned["metrics"]


@pytest.mark.slow
def test_head_pose_loss_keeps_the_estimated_pose_on_the_tracks(finetuned, talking_corpus, tmp_path, one_thread):
    """The paper's head-pose loss against the rendered videos' ground-truth poses (the paper uses a pretrained Hopenet
    as the reference): the same 40 steps with it estimate the held-out frames' head pose within about a degree;
    without it nothing ties the estimator's angles to a convention and they drift."""
    from experiments.train import train
    from training_helpers import compose_train

    cfg = compose_train(renderer_overrides(talking_corpus, tmp_path, 80, ["data.pairs_per_epoch=160",
                                                                          "data.batch_size=4",
                                                                          "callbacks.mouth_probe.every_n_steps=20"]))
    assert cfg.model.loss_weights.head_pose == 20  # the default
    L.seed_everything(cfg.seed, workers=True)
    metrics = train(cfg)
    with_loss, without = metrics["val/head_pose_error"], finetuned["metrics"]["val/head_pose_error"]
    held_out = finetuned["datamodule"].datasets["test"]
    sway = float(np.mean([np.abs(held_out[i]["driving_pose"].numpy()).mean() for i in range(len(held_out))]))
    print(f"held-out head pose error: {with_loss:.2f} degrees with the loss, {without:.2f} without; "
          f"the sway itself (error of always answering 0): {sway:.2f}")
    assert with_loss <= 0.25 * without
    assert with_loss <= 2.0
    # The mouth probe callback of experiment=renderer_demo logged its curve (twice: after steps 20 and 40).
    probed = [row for row in csv.DictReader(open(next((tmp_path / "renderer_demo" / "tune" / "csv").glob(
        "attempt_*/metrics.csv")))) if row.get("probe/mouth_r")]
    assert [int(row["step"]) for row in probed] == [19, 39]  # Lightning's step axis: batches, 0-based
    assert all(0 < float(row["probe/mouth_change_ratio"]) for row in probed)


@pytest.mark.slow
def test_ddp_on_one_machine_trains_the_gan_in_two_processes(talking_corpus, tmp_path):
    """`dtl train trainer=ddp` on one node: Lightning starts rank 1 by running the command again, which must reach the
    Hydra entry point; the discriminator's step leaves the generator without gradients, hence
    ddp_find_unused_parameters_true (docs/renderer.md). Two CPU processes (gloo) stand in for two GPUs."""
    command = [str(Path(sys.executable).with_name("dtl")), "train",
               *renderer_overrides(talking_corpus, tmp_path, 8, ["data.pairs_per_epoch=8", "data.batch_size=2",
                                                                 "trainer.limit_val_batches=2"]),
               "trainer=ddp", "trainer.devices=2", "trainer.strategy=ddp_find_unused_parameters_true"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-4000:]
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in text and "GLOBAL_RANK: 1, MEMBER: 2/2" in text
    run_dir = tmp_path / "renderer_demo" / "tune"
    assert text.count("(attempt 0)") == 2 and "(attempt 1)" not in text  # rank 1 joins rank 0's attempt
    assert [p.name for p in (run_dir / "meta").iterdir()] == ["attempt_0"]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 8  # 4 generator + 4 discriminator steps on each rank


@pytest.mark.slow
def test_bf16_mixed_precision_trains_the_gan(talking_corpus, tmp_path, one_thread):
    """The trainer=gpu precision (bf16-mixed) through the whole GAN step, here under CPU autocast; the GPU run and its
    throughput are measured only when a GPU is lent (benchmarks/README.md)."""
    import hydra

    from experiments.train import train
    from lightning_modules.renderer_finetune import load_renderer
    from training_helpers import compose_train

    cfg = compose_train(renderer_overrides(talking_corpus, tmp_path, 12, [
        "trainer.precision=bf16-mixed", "data.pairs_per_epoch=12", "data.batch_size=2", "trainer.limit_val_batches=2",
        "trainer.log_every_n_steps=1"]))
    L.seed_everything(cfg.seed, workers=True)
    before = hydra.utils.instantiate(cfg.model).model.state_dict()
    metrics = train(cfg)
    assert np.isfinite(metrics["val/l1"]) and np.isfinite(metrics["train/loss"])
    after = load_renderer(tmp_path / "renderer_demo" / "tune").model.state_dict()
    assert all(v.dtype == before[k].dtype for k, v in after.items())  # fp32 master weights, bf16 compute
    moved = [k for k, v in after.items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith("he_estimator.") for k in moved) and any(k.startswith("decoder.") for k in moved)


def test_datamodule_crops_caches_and_holds_out_frames(talking_corpus, tmp_path):
    from dtl_foundation.mead import ClipKey
    from datamodules.talking_video_datamodule import TalkingVideoDataModule, load_head_angles
    from datamodules.demo.videos import clip_head_motion

    dm = TalkingVideoDataModule(str(talking_corpus), cache_dir=str(tmp_path / "frames"), image_size=64,
                                crop="detect", speakers=[SPEAKER], split_by="frames", holdout_fraction=0.25,
                                pairs_per_epoch=10, batch_size=4, progress=False)
    dm.prepare_data()
    cached = sorted((tmp_path / "frames").glob("*.npy"))
    assert len(cached) == len(CLIPS)
    stamps = [p.stat().st_mtime_ns for p in cached]
    dm.setup("fit")
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # read back, not decoded again
    frames = [np.load(p) for p in cached]
    assert all(f.shape[1:] == (64, 64, 3) and f.dtype == np.uint8 for f in frames)
    train, held_out = dm.datasets["train"], dm.datasets["val"]
    assert sum(len(v) for v in train.videos) + len(held_out.targets[0]) + len(held_out.targets[1]) + len(
        held_out.targets[2]) == sum(len(f) for f in frames)
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"].shape == (4, 3, 64, 64) and 0 <= float(batch["source"].min()) <= float(
        batch["source"].max()) <= 1
    # The face crop is centred on the face: the crop's centre is skin, not the grey background.
    centre = frames[0][0, 24:40, 24:40].astype(float)
    assert np.abs(centre - np.array([0.34, 0.35, 0.38]) * 255).mean() > 20
    # The rendered head sway is written beside the videos and rides along, resampled to the decoded 25 frames/s.
    record = dm.records["val"][0]
    key = ClipKey(record.speaker, record.emotion, record.level, record.sentence)
    track = np.load(key.head_pose_path(talking_corpus))
    np.testing.assert_allclose(track, clip_head_motion(record.clip_id, len(track), record.fps), atol=1e-5)
    assert bool(batch["has_pose"].all()) and batch["driving_pose"].shape == (4, 3)
    row = round(len(train.videos[0]) * record.fps / 25)  # the first held-out frame of the first video
    np.testing.assert_allclose(held_out[0]["driving_pose"].numpy(), track[row, :3], atol=1e-6)
    without = TalkingVideoDataModule(str(talking_corpus), cache_dir=str(tmp_path / "frames"), image_size=64,
                                     speakers=[SPEAKER], split_by="frames", head_poses=False, progress=False)
    without.setup("fit")
    assert not bool(without.datasets["val"][0]["has_pose"])
    frames_of_record = len(train.videos[0]) + len(held_out.targets[0])
    bad = key.head_pose_path(tmp_path / "bad")
    bad.parent.mkdir(parents=True)
    np.save(bad, track[:10])  # a track of another clip
    with pytest.raises(ValueError, match=f"{bad}: 10 rows, but the video's"):
        load_head_angles(record, tmp_path / "bad", frames_of_record, 25)
    np.save(bad, track[:, :5])
    with pytest.raises(ValueError, match="not a \\(T, 6\\) finite head pose track"):
        load_head_angles(record, tmp_path / "bad", frames_of_record, 25)
    with pytest.raises(ValueError, match="no talking videos match"):
        TalkingVideoDataModule(str(talking_corpus), cache_dir=str(tmp_path / "x"), speakers=["W999"],
                               progress=False).prepare_data()


def test_missing_vgg19_weights_give_a_clear_error(tmp_path, monkeypatch):
    from lightning_modules.networks.face_vid2vid import FaceVid2Vid, MultiScaleDiscriminator
    from lightning_modules.renderer_finetune import RendererFinetune
    from dtl_foundation.weights import MissingWeightsError
    from test_face_vid2vid import TINY

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingWeightsError) as error:
        RendererFinetune(FaceVid2Vid(**TINY), MultiScaleDiscriminator(), perceptual="vgg19")
    message = str(error.value)
    assert "vgg19-dcbb9e9d.pth" in message and str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message


@pytest.fixture(scope="module")
def probe():
    from metrics.mouth_motion import jaw_probe

    return jaw_probe(SPEAKER, image_size=64)


def test_mouth_motion_scores_tell_mouth_motion_from_jitter(probe):
    """The probe's own frames follow their jaw; a still output scores nothing; the whole face shaking scores as
    upper-face motion, not as mouth motion."""
    from metrics.mouth_motion import mouth_follows_jaw

    own = mouth_follows_jaw(probe.frames, probe)
    assert own["mouth_r"] > 0.95 and own["mouth_change_ratio"] == 1.0 and own["upper_face_ratio"] < 0.1
    still = mouth_follows_jaw(probe.frames[:1].expand_as(probe.frames), probe)
    assert still["mouth_change_ratio"] == 0.0 and np.isnan(still["mouth_r"])
    rng = np.random.default_rng(0)
    shaking = torch.stack([torch.roll(probe.frames[0], (int(dy), int(dx)), (1, 2))
                           for dy, dx in rng.integers(-2, 3, (len(probe.frames), 2))])
    jitter = mouth_follows_jaw(shaking, probe)
    assert abs(jitter["mouth_r"]) < 0.5 and jitter["upper_face_ratio"] > 0.5


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="40 CPU steps do not teach the tiny network mouth motion: measured r = -0.18 "
                                       "(the output's mouth region changes, but not with jawOpen); docs/renderer.md")
def test_motion_transfer_moves_the_mouth_with_jaw_open(finetuned, probe):
    """Drive the speaker's first frame with the rig opening and closing its jaw (no head motion): the output's mouth
    region must change with jawOpen (Pearson r >= 0.5) and by at least a tenth of what the avatar's mouth changes."""
    from lightning_modules.renderer_finetune import load_renderer
    from metrics.mouth_motion import probe_renderer

    after = probe_renderer(load_renderer(finetuned["run_dir"]).model, probe)
    before = probe_renderer(finetuned["before"], probe)
    print(f"mouth change vs jawOpen after 40 steps: {after}; before: {before}")
    assert after["mouth_r"] >= 0.5
    assert after["mouth_change_ratio"] >= 0.1


def test_vgg19_perceptual_loss_from_a_torchvision_state_dict():
    """The loss path a real vgg19-dcbb9e9d.pth takes, fed a seeded random torchvision VGG19 state dict."""
    from torchvision.models import vgg19

    from lightning_modules.networks.face_vid2vid.perceptual import VGG19Features, perceptual_loss
    from lightning_modules.networks.face_vid2vid.training_losses import ImagePyramid

    torch.manual_seed(0)
    vgg = VGG19Features(state_dict=vgg19(weights=None).state_dict())
    image = torch.rand(2, 3, 64, 64)
    assert [f.shape[1] for f in vgg(image)] == [64, 128, 256, 512, 512]
    assert [f.shape[-1] for f in vgg(image)] == [64, 32, 16, 8, 4]
    pyramid = ImagePyramid((1, 0.5))
    weights = (10, 10, 10, 10, 10)
    assert float(perceptual_loss(vgg, pyramid(image), pyramid(image), weights)) == 0.0
    assert float(perceptual_loss(vgg, pyramid(image), pyramid(image.flip(-1)), weights)) > 0.0
    assert not any(p.requires_grad for p in vgg.parameters())
