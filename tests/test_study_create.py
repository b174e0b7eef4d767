"""`dtl study create`: real MP4s in, a migrated database with the balanced plan out, attention-check videos whose
audio is 15 frames late, clear errors for unusable inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, func, select

from experiments.study.cli import main as study_main
from experiments.study.database import (current_revision, database_url, downgrade, head_revision, make_engine,
                                        open_database, upgrade)
from experiments.study.models import Base, Participant, Study, Trial, TrialMedia, Video
from experiments.study.plan import ATTENTION_SHIFT_FRAMES
from experiments.study.sources import StudySourceError, common_clips, method_videos
from dtl_foundation.media.video_read import read_audio_track, read_frames
from study_helpers import FPS, create_study, make_methods

CLIPS = ["W001_happy_level_3_001", "W002_sad_level_1_002"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return make_methods(tmp_path_factory.mktemp("methods"), {"alpha": (200, 160, 140), "beta": (170, 140, 120)},
                        CLIPS)


def test_migrations_build_the_models_schema(tmp_path):
    engine = make_engine(database_url(tmp_path / "s.db"))
    with pytest.raises(ValueError, match="not a study database.*dtl study migrate"):
        open_database(str(engine.url), migrate=False)
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert compare_metadata(context, Base.metadata) == []
        # the comparison sees a difference when there is one: a model column the migrations do not create
        changed = MetaData()
        for table in Base.metadata.tables.values():
            table.to_metadata(changed)
        changed.tables["answer"].append_column(Column("confidence", Integer))
        assert [d[0] for d in compare_metadata(context, changed)] == ["add_column"]
    downgrade(engine, "base")
    assert current_revision(engine) is None


def _lag_samples(original: np.ndarray, shifted: np.ndarray) -> int:
    a, b = original.astype(float), shifted.astype(float)
    correlation = correlate(b, a[:len(a) // 2], mode="valid", method="fft")
    return int(np.argmax(correlation))


def test_create_writes_the_plan_and_attention_videos_with_late_audio(tmp_path, folders):
    study = create_study(tmp_path, "sync", folders, participants=4, attention_checks=1)
    sessions = open_database(study["db"], migrate=False)
    with sessions() as s:
        row = s.scalar(select(Study))
        assert (row.design, row.criteria, [m.name for m in row.methods]) == ("2afc", ["lip_sync", "realism"],
                                                                            ["alpha", "beta"])
        assert [c.emotion for c in row.clips] == ["happy", "sad"]
        assert s.scalar(select(func.count(Participant.id))) == 4
        assert s.scalar(select(func.count(Trial.id))) == 4 * (2 * 2 * 1 + 1)
        assert row.admin_token_hash != study["admin"] and study["admin"] not in str(row.__dict__)
        shifted = s.scalars(select(Video).where(Video.shifted)).all()
        assert shifted and all(v.path.startswith(str(study["out"] / "attention")) for v in shifted)
        media_ids = s.scalars(select(TrialMedia.media_id)).all()
        assert len(set(media_ids)) == len(media_ids)  # one opaque id per trial and slot
        for video in shifted[:2]:
            original = s.scalar(select(Video).where(Video.method_id == video.method_id,
                                                    Video.clip_id == video.clip_id, ~Video.shifted))
            np.testing.assert_array_equal(read_frames(video.path), read_frames(original.path))
            lag = _lag_samples(read_audio_track(original.path), read_audio_track(video.path))
            assert abs(lag - ATTENTION_SHIFT_FRAMES * 16000 / FPS) <= 16000 / FPS / 4
            assert _lag_samples(read_audio_track(original.path), read_audio_track(original.path)) == 0


def test_two_studies_share_one_database_and_a_name_only_once(tmp_path, folders):
    url = database_url(tmp_path / "lab.db")
    create_study(tmp_path, "first", folders, participants=1, db=url)
    create_study(tmp_path, "second", folders, participants=2, db=url, design="mos")
    assert study_main(["create", "first", *[f"{m}={f}" for m, f in folders.items()], "--participants", "1",
                       "--out", str(tmp_path / "again"), "--db", url]) == 1
    with open_database(url, migrate=False)() as s:
        assert sorted(s.scalars(select(Study.name))) == ["first", "second"]


def test_unusable_inputs_are_named(tmp_path, folders, capsys):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / f"{CLIPS[0]}.mp4").hardlink_to(folders["alpha"] / f"{CLIPS[0]}.mp4")
    assert study_main(["create", "x", f"alpha={folders['alpha']}", f"lonely={lonely}", "--participants", "1",
                       "--out", str(tmp_path / "x")]) == 1
    assert f"{lonely}: no video for clip(s) {CLIPS[1]}" in capsys.readouterr().err
    assert study_main(["create", "x", f"alpha={folders['alpha']}", f"gone={tmp_path / 'gone'}", "--participants", "1",
                       "--out", str(tmp_path / "x")]) == 1
    assert f"{tmp_path / 'gone'}: no such folder" in capsys.readouterr().err
    with pytest.raises(StudySourceError, match="no .mp4 videos"):
        (tmp_path / "empty").mkdir()
        method_videos(f"empty={tmp_path / 'empty'}")


def test_generated_clip_ids_match_a_corpus_layout_with_more_clips(tmp_path, folders):
    corpus = tmp_path / "corpus"
    for clip in CLIPS:  # W001_happy_level_3_001 -> W001/video/front/happy/level_3/001.mp4
        speaker, emotion, _, level, number = clip.split("_")
        target = corpus / speaker / "video" / "front" / emotion / f"level_{level}" / f"{number}.mp4"
        target.parent.mkdir(parents=True)
        target.hardlink_to(folders["beta"] / f"{clip}.mp4")
    extra = corpus / "W003" / "video" / "front" / "fear" / "level_1" / "004.mp4"
    extra.parent.mkdir(parents=True)
    extra.hardlink_to(folders["beta"] / f"{CLIPS[0]}.mp4")
    generated, reference = method_videos(f"ours={folders['alpha']}"), method_videos(f"corpus={corpus}")
    assert sorted(reference.videos) == sorted([*CLIPS, "W003_fear_level_1_004"])
    assert common_clips([generated, reference]) == CLIPS
    with pytest.raises(StudySourceError, match=f"{folders['alpha']}: no video for clip.*W003_fear_level_1_004"):
        common_clips([reference, generated])


def test_identity_trials_show_the_clips_reference_picture(tmp_path, folders):
    import httpx
    from PIL import Image

    from experiments.study.server import create_app
    from study_helpers import running_server

    assert study_main(["create", "who", *[f"{m}={f}" for m, f in folders.items()], "--criteria", "identity",
                       "--participants", "1", "--out", str(tmp_path / "who")]) == 1  # no --reference
    references = tmp_path / "references"
    references.mkdir()
    for i, clip in enumerate(CLIPS):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(references / f"{clip}.png")
    study = create_study(tmp_path, "identity", folders, participants=1, criteria=("identity",), attention_checks=1,
                         reference=references)
    token = study["tokens"][0]
    seen = {"identity": 0, "attention": 0}
    with running_server(create_app(study["db"])) as base, httpx.Client(base_url=base) as c:
        state = c.post(f"/api/p/{token}/consent", json={"agree": True}).json()
        while state["trial"] is not None:
            trial = state["trial"]
            if trial["reference"] is None:
                seen["attention"] += 1
                assert "lips" in trial["question"]
            else:
                seen["identity"] += 1
                picture = c.get(trial["reference"])
                assert picture.headers["content-type"] == "image/png" and picture.content[:4] == b"\x89PNG"
            assert c.get(f"/api/p/{token}/reference/99").status_code == 404
            state = c.post(f"/api/p/{token}/answers", json={"trial": trial["trial"], "choice": 0}).json()["state"]
    assert seen == {"identity": len(CLIPS), "attention": 1}
    assert study_main(["create", "identity2", *[f"{m}={f}" for m, f in folders.items()], "--participants", "1",
                       "--out", str(study["out"])]) == 1  # the folder holds a study's links already


def test_migrate_command_and_the_studys_own_title_and_consent(tmp_path, folders, capsys):
    import httpx

    from experiments.study.server import create_app
    from study_helpers import running_server

    url = database_url(tmp_path / "fresh.db")
    assert study_main(["migrate", "--db", url]) == 0
    assert f"schema at revision {head_revision()}" in capsys.readouterr().out
    consent = tmp_path / "consent.txt"
    consent.write_text("Approved by the ethics board, protocol 7. You may stop at any time.\n")
    out = tmp_path / "titled"
    assert study_main(["create", "titled", *[f"{m}={f}" for m, f in folders.items()], "--participants", "1",
                       "--title", "Which face talks better?", "--consent", str(consent), "--out", str(out),
                       "--db", url]) == 0
    token = (out / "links.csv").read_text().splitlines()[1].rsplit("/", 1)[1]
    with running_server(create_app(url)) as base, httpx.Client(base_url=base) as c:
        state = c.get(f"/api/p/{token}/state").json()
        page = c.get(f"/p/{token}").text
    assert state["consent"] == consent.read_text().strip() and state["title"] == "Which face talks better?"
    assert "<title>Which face talks better?</title>" in page
