"""Fit head pose and the 52 ARKit coefficients of a whole clip to its 2D landmarks, batched over frames in torch.

Model per frame t: landmarks X_t = N + B beta + delta + c_t @ D (rig neutral N, identity basis B with per-clip
weights beta, a per-clip free offset delta, blendshape deltas D), posed by the renderer's rigid transform and
projected by its camera. Minimised: squared pixel error over inter-ocular distance, plus temporal smoothness
of coefficients and pose, an L1 pull of the coefficients to 0, ridge penalties on beta and delta and, given an
ExpressionPrior learned from captured tracks, the squared Mahalanobis distance of c_t under it (a MAP fit); the
coefficients stay in [0, 1] by projection after every Adam step (projected gradient descent). This is the
bounded least squares of 3DMM tracking (Blanz & Vetter 1999; per-frame blendshape tracking, Weise et al. 2011).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from datamodules.extraction.expression_prior import ExpressionPrior
from dtl_foundation.arkit import NUM_BLENDSHAPES
from rendering.rig_landmarks import NUM_LANDMARKS, RigLandmarks

JAW_LINE = slice(0, 17)
OUTER_EYE_CORNERS = (36, 45)


class FitError(ValueError):
    """Landmarks the fit cannot use (wrong shape, too few frames with a face)."""


@dataclass(frozen=True)
class FitConfig:
    """Weights and schedule of the fit; the defaults were tuned on the demo round trip and the astronaut."""

    rigid_steps: int = 150
    steps: int = 400
    lr_coeffs: float = 0.03
    lr_angles: float = 0.5  # degrees
    lr_translation: float = 0.002  # metres
    lr_identity: float = 0.03
    lr_offset: float = 0.0005  # metres
    # the data term is the mean squared landmark error in percent of the inter-ocular distance
    smooth_coeffs: float = 1.0  # weight of the squared first difference of the coefficients
    smooth_angles: float = 0.5  # the same for the head angles (degrees)
    # and for the translation (millimetres): heavier, since for small turns a sideways shift of the head looks
    # almost like a turn, and heads shift more slowly than they turn
    smooth_translation: float = 200.0
    sparsity: float = 0.05  # L1 weight on the coefficients
    sparsity_by_motion: bool = False  # scale each shape's L1 weight by how far it moves the landmarks
    identity_reg: float = 0.1  # ridge on the identity weights (one unit = IDENTITY_STEP of a proportion)
    offset_reg: float = 0.5  # ridge on the free landmark offsets: mean squared millimetres
    jaw_line_weight: float = 0.4  # dlib's jaw line slides along the silhouette: trust it less
    min_observability: float = 2e-4  # metres: shapes that move the landmarks less than this stay at 0
    # with an ExpressionPrior: weight of the squared Mahalanobis distance of a frame's coefficients (mean over
    # frames). Tuned on demo clips of M003/W004 with a prior from M005/W006: 0.003-0.03 all within 0.01 of the
    # best mouth-set r; the L1 weight above mattered little beside it (0 to 0.1: 0.71-0.72) and stays as it is
    prior_weight: float = 0.01


@dataclass
class FitResult:
    """coeffs (T, 52) in [0, 1], poses (T, 6) (yaw, pitch, roll degrees; tx, ty, tz metres), residual (T, 68)
    pixel error per landmark (NaN where no face), interocular (pixels), fitted (T, 68, 2) model landmarks,
    identity (K,) weights and offset (68, 3) of the clip, loss history."""

    coeffs: np.ndarray
    poses: np.ndarray
    residual: np.ndarray
    interocular: float
    fitted: np.ndarray
    identity: np.ndarray
    offset: np.ndarray
    losses: list[float]

    @property
    def normalised_residual(self) -> float:
        """Mean landmark error over frames with a face, as a fraction of the inter-ocular distance."""
        return float(np.nanmean(self.residual) / self.interocular)


class RigCamera(torch.nn.Module):
    """The renderer's rigid head transform and perspective camera, differentiable (see rendering.gl_renderer)."""

    def __init__(self, calibration: RigLandmarks) -> None:
        super().__init__()
        self.register_buffer("viewproj", torch.as_tensor(calibration.viewproj, dtype=torch.float64))
        self.register_buffer("pivot", torch.as_tensor(calibration.pivot, dtype=torch.float64))
        self.size = calibration.size

    @staticmethod
    def rotation(angles: torch.Tensor) -> torch.Tensor:
        """(T, 3, 3) R = Ry(yaw) Rx(pitch) Rz(roll) from (T, 3) degrees."""
        y, p, r = torch.deg2rad(angles).unbind(-1)
        one, zero = torch.ones_like(y), torch.zeros_like(y)
        Ry = torch.stack([torch.stack([y.cos(), zero, y.sin()], -1), torch.stack([zero, one, zero], -1),
                          torch.stack([-y.sin(), zero, y.cos()], -1)], -2)
        Rx = torch.stack([torch.stack([one, zero, zero], -1), torch.stack([zero, p.cos(), -p.sin()], -1),
                          torch.stack([zero, p.sin(), p.cos()], -1)], -2)
        Rz = torch.stack([torch.stack([r.cos(), -r.sin(), zero], -1), torch.stack([r.sin(), r.cos(), zero], -1),
                          torch.stack([zero, zero, one], -1)], -2)
        return Ry @ Rx @ Rz

    def forward(self, points: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        """(T, N, 2) pixels of rig-frame points (T, N, 3) under poses (T, 6)."""
        R = self.rotation(poses[:, :3])
        world = (points - self.pivot) @ R.transpose(1, 2) + self.pivot + poses[:, None, 3:]
        clip = world @ self.viewproj[:3, :3].T + self.viewproj[:3, 3]
        w = world @ self.viewproj[3, :3] + self.viewproj[3, 3]
        ndc = clip[..., :2] / w[..., None]
        return torch.stack([(ndc[..., 0] + 1) / 2 * self.size, (1 - ndc[..., 1]) / 2 * self.size], -1)


def initial_translation(calibration: RigLandmarks, landmarks: np.ndarray) -> np.ndarray:
    """(3,) translation that puts the neutral rig's landmark centroid and spread where the detections' are."""
    camera = RigCamera(calibration)
    model = camera(torch.as_tensor(calibration.neutral)[None], torch.zeros(1, 6, dtype=torch.float64))[0].numpy()
    centre_m, centre_o = model.mean(0), np.nanmean(landmarks, axis=(0, 1))
    spread_m = np.sqrt(((model - centre_m) ** 2).sum(-1).mean())
    spread_o = np.sqrt(np.nanmean(((landmarks - centre_o) ** 2).sum(-1)))
    centroid = calibration.neutral.mean(0)
    distance = float(calibration.eye[2] - centroid[2])
    new_distance = distance * spread_m / spread_o
    focal = float(calibration.viewproj[1, 1])  # 1 / tan(fov / 2)
    shift_px = centre_o - centre_m
    tx = shift_px[0] / calibration.size * 2 * new_distance / focal
    ty = -shift_px[1] / calibration.size * 2 * new_distance / focal
    return np.array([tx, ty, distance - new_distance])


def interocular(landmarks: np.ndarray) -> float:
    """Median distance (pixels) between the outer eye corners over the frames with a face."""
    a, b = OUTER_EYE_CORNERS
    d = np.linalg.norm(landmarks[:, a] - landmarks[:, b], axis=-1)
    return float(np.nanmedian(d))


def fit_landmarks(landmarks: np.ndarray, calibration: RigLandmarks, config: FitConfig = FitConfig(),
                  device: str | torch.device = "cpu", *, identity: np.ndarray | None = None,
                  offset: np.ndarray | None = None, starts: list[int] | None = None,
                  prior: ExpressionPrior | None = None) -> FitResult:
    """Fit a clip: landmarks (T, 68, 2) in the calibration camera's pixels, NaN rows for frames without a face.

    `identity` and `offset` (from `fit_speaker`) fix the face's shape instead of solving it with the clip;
    `starts` lists frames where a new clip begins (no smoothness across them) when several are fitted at once;
    `prior` adds its Mahalanobis penalty on the shapes the landmarks see (the MAP fit).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (NUM_LANDMARKS, 2):
        raise FitError(f"landmarks must be (frames, {NUM_LANDMARKS}, 2), got {landmarks.shape}")
    seen = np.isfinite(landmarks).all(axis=(1, 2))
    if not seen.any():
        raise FitError("no frame has a face")
    T = len(landmarks)
    dev = torch.device(device)
    dtype = torch.float64
    camera = RigCamera(calibration).to(dev)
    target = torch.as_tensor(np.nan_to_num(landmarks), dtype=dtype, device=dev)
    mask = torch.as_tensor(seen, dtype=dtype, device=dev)[:, None]
    weights = torch.ones(NUM_LANDMARKS, dtype=dtype, device=dev)
    weights[JAW_LINE] = config.jaw_line_weight
    iod = interocular(landmarks[seen])
    neutral = torch.as_tensor(calibration.neutral, dtype=dtype, device=dev)
    deltas = torch.as_tensor(calibration.deltas, dtype=dtype, device=dev).reshape(NUM_BLENDSHAPES, -1)
    basis = torch.as_tensor(calibration.identity, dtype=dtype, device=dev)
    observability = calibration.observability()
    free = torch.as_tensor(observability >= config.min_observability, dtype=dtype, device=dev)
    # L1 on the landmark motion a shape causes rather than on its value: subtle shapes are not penalised more
    l1 = torch.as_tensor(observability / observability[observability >= config.min_observability].mean()
                         if config.sparsity_by_motion else np.ones(NUM_BLENDSHAPES), dtype=dtype, device=dev)
    # the prior's marginal over the shapes the landmarks see: the unseen ones stay 0 and are integrated out
    seen_shapes = np.flatnonzero(observability >= config.min_observability)
    if prior is not None:
        prior_mean = torch.as_tensor(prior.mean[seen_shapes], dtype=dtype, device=dev)
        prior_precision = torch.as_tensor(prior.precision(seen_shapes), dtype=dtype, device=dev)
        seen_index = torch.as_tensor(seen_shapes, device=dev)

    joined = torch.ones(max(T - 1, 0), 1, dtype=dtype, device=dev)
    for start in starts or []:
        if 0 < start < T:
            joined[start - 1] = 0.0

    def smooth(x: torch.Tensor) -> torch.Tensor:
        return (((x[1:] - x[:-1]) ** 2) * joined).sum(-1).mean()

    coeffs = torch.zeros(T, NUM_BLENDSHAPES, dtype=dtype, device=dev, requires_grad=True)
    angles = torch.zeros(T, 3, dtype=dtype, device=dev, requires_grad=True)
    start = torch.as_tensor(initial_translation(calibration, landmarks[seen]), dtype=dtype, device=dev)
    translation = start.repeat(T, 1).clone().requires_grad_(True)
    shape_fixed = identity is not None
    identity = (torch.as_tensor(identity, dtype=dtype, device=dev) if shape_fixed
                else torch.zeros(len(basis), dtype=dtype, device=dev, requires_grad=True))
    offset = (torch.as_tensor(offset, dtype=dtype, device=dev) if offset is not None
              else torch.zeros(NUM_LANDMARKS, 3, dtype=dtype, device=dev, requires_grad=not shape_fixed))
    frames_seen = mask.sum()

    def model_points() -> torch.Tensor:
        shape = neutral + (identity @ basis.reshape(len(basis), -1)).reshape(NUM_LANDMARKS, 3) + offset
        return shape + (coeffs @ deltas).reshape(T, NUM_LANDMARKS, 3)

    def loss_terms(with_expression: bool) -> torch.Tensor:
        pixels = camera(model_points(), torch.cat([angles, translation], -1))
        error = ((pixels - target) ** 2).sum(-1) * (100.0 / iod) ** 2  # (T, 68), squared percent of the IOD
        data = (error * weights * mask).sum() / (frames_seen * weights.sum())
        loss = data
        if T > 1:
            loss = loss + config.smooth_angles * smooth(angles) + config.smooth_translation * smooth(translation * 1000)
            if with_expression:
                loss = loss + config.smooth_coeffs * smooth(coeffs)
        if with_expression:
            loss = loss + config.sparsity * (coeffs.abs() * l1).sum(-1).mean()
            if prior is not None:
                d = coeffs[:, seen_index] - prior_mean
                loss = loss + config.prior_weight * ((d @ prior_precision) * d).sum(-1).mean()
        if not shape_fixed:
            loss = loss + config.identity_reg * (identity ** 2).sum()
            loss = loss + config.offset_reg * ((offset * 1000) ** 2).sum(-1).mean()
        return loss

    losses: list[float] = []
    shape_groups = [] if shape_fixed else [{"params": [identity], "lr": config.lr_identity}]
    rigid = torch.optim.Adam([{"params": [angles], "lr": config.lr_angles},
                              {"params": [translation], "lr": config.lr_translation}] + shape_groups)
    for _ in range(config.rigid_steps):
        rigid.zero_grad()
        loss = loss_terms(with_expression=False)
        loss.backward()
        rigid.step()
    losses.append(float(loss.detach()))
    joint = torch.optim.Adam([{"params": [coeffs], "lr": config.lr_coeffs},
                              {"params": [angles], "lr": config.lr_angles * 0.3},
                              {"params": [translation], "lr": config.lr_translation * 0.3}] + shape_groups
                             + ([] if shape_fixed else [{"params": [offset], "lr": config.lr_offset}]))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(joint, config.steps, eta_min=0.0)
    for step in range(config.steps):
        joint.zero_grad()
        loss = loss_terms(with_expression=True)
        loss.backward()
        joint.step()
        schedule.step()
        with torch.no_grad():
            coeffs.mul_(free).clamp_(0.0, 1.0)
        if step % 50 == 0 or step == config.steps - 1:
            losses.append(float(loss.detach()))

    with torch.no_grad():
        poses = torch.cat([angles, translation], -1)
        pixels = camera(model_points(), poses)
        residual = torch.linalg.norm(pixels - target, dim=-1).cpu().numpy()
    residual[~seen] = np.nan
    return FitResult(coeffs=coeffs.detach().cpu().numpy().astype(np.float32),
                     poses=poses.cpu().numpy(), residual=residual, interocular=iod,
                     fitted=pixels.cpu().numpy(), identity=identity.detach().cpu().numpy(),
                     offset=offset.detach().cpu().numpy(), losses=losses)


def fit_speaker(clips: list[np.ndarray], calibration: RigLandmarks, config: FitConfig = FitConfig(),
                device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The face shape of one speaker, (identity weights, landmark offsets), from several of their clips fitted
    together (MEAD's neutral clips are best): a per-speaker shape keeps a clip-long expression, such as a
    smile held through a happy clip, from being taken for the shape of the face."""
    clips = [np.asarray(c, dtype=np.float64) for c in clips if len(c)]
    if not clips:
        raise FitError("no clips to fit the speaker's face shape on")
    starts = list(np.cumsum([len(c) for c in clips])[:-1])
    # the clips are assumed near expressionless: expression costs more and shape less than in a clip's fit
    shape_first = replace(config, sparsity=config.sparsity * 4, offset_reg=config.offset_reg * 0.1)
    result = fit_landmarks(np.concatenate(clips), calibration, shape_first, device, starts=starts)
    return result.identity, result.offset
