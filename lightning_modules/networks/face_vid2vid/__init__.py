"""face-vid2vid (Wang et al., "One-Shot Free-View Neural Talking-Head Synthesis", CVPR 2021), one network a file."""

from lightning_modules.networks.face_vid2vid.appearance import AppearanceFeatureExtractor
from lightning_modules.networks.face_vid2vid.decoder import OcclusionAwareDecoder
from lightning_modules.networks.face_vid2vid.dense_motion import DenseMotionNetwork
from lightning_modules.networks.face_vid2vid.discriminator import MultiScaleDiscriminator
from lightning_modules.networks.face_vid2vid.head_expression import HeadExpressionEstimator
from lightning_modules.networks.face_vid2vid.keypoints import CanonicalKeypointDetector
from lightning_modules.networks.face_vid2vid.model import FaceVid2Vid

__all__ = ["AppearanceFeatureExtractor", "CanonicalKeypointDetector", "DenseMotionNetwork", "FaceVid2Vid",
           "HeadExpressionEstimator", "MultiScaleDiscriminator", "OcclusionAwareDecoder"]
