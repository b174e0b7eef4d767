"""The neutral head of the default rig: skin, eyes with lids, mouth interior, neck and ears as one mesh with a part
id per vertex, built from the face parameters' landmark layout."""

from __future__ import annotations

import numpy as np

from rendering.face_params import (
    CAVITY,
    EAR,
    EYEBALL,
    LOWER_LID,
    LOWER_TEETH,
    NECK,
    SKIN,
    TONGUE,
    UPPER_LID,
    UPPER_TEETH,
    FaceLayout,
    FaceParams,
)

# --- small numeric helpers -------------------------------------------------------------------------------

def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-((x - cx) / sx) ** 2 - ((y - cy) / sy) ** 2)


def _density_samples(lo: float, hi: float, count: int, bumps: list[tuple[float, float, float]]) -> np.ndarray:
    """`count` increasing samples over [lo, hi], denser around each (centre, width, extra density) bump."""
    fine = np.linspace(lo, hi, 4097)
    density = np.ones_like(fine)
    for centre, width, extra in bumps:
        density += extra * np.exp(-((fine - centre) / width) ** 2)
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    return np.interp(np.linspace(0.0, cdf[-1], count), cdf, fine)


def rotation(axis: str, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _grid_triangles(rows: int, cols: int, offset: int, wrap: bool) -> np.ndarray:
    """Two triangles per cell of a rows x cols vertex grid (row-major), counter-clockwise seen from outside."""
    j, i = np.meshgrid(np.arange(rows - 1), np.arange(cols if wrap else cols - 1), indexing="ij")
    i2 = (i + 1) % cols
    a, b, c, d = j * cols + i, j * cols + i2, (j + 1) * cols + i2, (j + 1) * cols + i
    tris = np.stack([np.stack([a, b, c], -1), np.stack([a, c, d], -1)], axis=2).reshape(-1, 3)
    return tris + offset


class HeadMesh:
    """Accumulates the parts of the rig: vertices, triangles, colours and a part id per vertex."""

    def __init__(self) -> None:
        self.vertices: list[np.ndarray] = []
        self.triangles: list[np.ndarray] = []
        self.colors: list[np.ndarray] = []
        self.parts: list[np.ndarray] = []
        self.count = 0

    def add(self, part: int, vertices: np.ndarray, triangles: np.ndarray, colors: np.ndarray) -> slice:
        start = self.count
        self.vertices.append(np.asarray(vertices, np.float64))
        self.triangles.append(np.asarray(triangles, np.int64) + start)
        self.colors.append(np.broadcast_to(np.asarray(colors, np.float64), (len(vertices), 3)))
        self.parts.append(np.full(len(vertices), part))
        self.count += len(vertices)
        return slice(start, self.count)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (np.concatenate(self.vertices), np.concatenate(self.triangles), np.concatenate(self.colors),
                np.concatenate(self.parts))


# --- the head surface ------------------------------------------------------------------------------------

_UPPER_EXPONENT, _LOWER_EXPONENT = 2.2, 2.7  # superellipse exponents in profile: a squarer jaw than a skull


def _latitude_y(phi: np.ndarray) -> np.ndarray:
    """Height on a unit head profile at latitude phi."""
    m = np.where(phi < 0, _LOWER_EXPONENT, _UPPER_EXPONENT)
    return np.sign(phi) * np.abs(np.sin(phi)) ** (2 / m)


def _latitude_of(y: float) -> float:
    """The inverse of `_latitude_y` for a height in [-1, 1]."""
    m = _LOWER_EXPONENT if y < 0 else _UPPER_EXPONENT
    return float(np.sign(y) * np.arcsin(abs(y) ** (m / 2)))


def _head_surface(theta: np.ndarray, phi: np.ndarray, L: FaceLayout, p: FaceParams) -> np.ndarray:
    """Skin points for longitude theta (0 = front, + towards the subject's left) and latitude phi."""
    n = 2.3  # superellipse exponent across: a flatter face than an ellipsoid's
    st, ct = np.sin(theta), np.cos(theta)
    hx = np.sign(st) * np.abs(st) ** (2 / n)
    hz = np.sign(ct) * np.abs(ct) ** (2 / n)
    m = np.where(phi < 0, _LOWER_EXPONENT, _UPPER_EXPONENT)
    c = np.abs(np.cos(phi)) ** (2 / m)
    y = L.ay * _latitude_y(phi)
    x = L.ax * c * hx
    z = L.az * c * hz
    below = smoothstep(-0.01, -L.ay, y)
    x = x * (1.0 - 0.24 / p.jaw_width * smoothstep(-0.03, -L.ay, y) ** 1.5)  # the jaw narrows to the chin
    front = np.clip(hz, 0.0, 1.0)
    z = z + front ** 1.5 * 0.030 * below ** 1.2  # the lower face stands forward (chin, mouth)
    z = np.where(z < 0, z * 1.08, z)  # a fuller back of the skull
    top = smoothstep(0.02, L.ay, y)
    z = z - 0.01 * top * front  # the forehead slopes back
    return np.stack([x, y, z], axis=-1)


def socket_depth(x: np.ndarray, y: np.ndarray, L: FaceLayout) -> np.ndarray:
    """How far the eye sockets push the skin in (metres) at (x, y)."""
    return sum(0.0125 * gauss(x, y, s * L.eye_x, L.eye_y, 0.0175, 0.0115) for s in (-1.0, 1.0))


def _hairline(theta_degrees: np.ndarray, p: FaceParams) -> np.ndarray:
    """Height of the hairline at |longitude| (degrees): high on the forehead, low at the temples and nape."""
    line = np.interp(np.abs(theta_degrees), [0, 28, 60, 80, 100, 130, 180],
                     [0.078, 0.074, 0.050, 0.030, 0.010, -0.040, -0.070])
    return line * p.head_height + p.hairline


def _face_relief(P: np.ndarray, L: FaceLayout, p: FaceParams) -> np.ndarray:
    """Height (along +z) of the facial features over the base head at points P."""
    x, y = P[..., 0], P[..., 1]
    ax_ = np.abs(x)
    d = -socket_depth(x, y, L)
    for s in (-1.0, 1.0):
        d += 0.0045 * gauss(x, y, s * 0.030, L.brow_y - 0.002, 0.020, 0.007)  # brow ridge
        d += 0.0060 * gauss(x, y, s * 0.043, -0.012, 0.018, 0.015)  # cheekbones
        d += 0.0065 * gauss(x, y, s * 0.0135 * p.nose_width, L.nose_tip_y + 0.003, 0.0055, 0.005)  # alae
        d -= 0.0030 * gauss(x, y, s * L.mouth_w, L.mouth_y, 0.004, 0.004)  # mouth corners
    # nose: a ridge from the root to the tip, wider and higher towards the tip, undercut below it
    t = np.clip((L.nose_root_y - y) / (L.nose_root_y - L.nose_tip_y), 0.0, 1.0)
    height = np.where(y > L.nose_tip_y, 0.005 + 0.017 * t ** 1.4, 0.022 * np.exp(-((y - L.nose_tip_y) / 0.0055) ** 2))
    height = np.where(y > L.nose_root_y, 0.005 * np.exp(-((y - L.nose_root_y) / 0.012) ** 2), height)
    width = (0.0050 + 0.0045 * t) * p.nose_width
    d += height * np.exp(-(ax_ / width) ** 2.2)
    # lips, the groove between them, the chin
    lf = p.lip_fullness
    d += 0.0050 * lf * np.exp(-(x / 0.022) ** 4 - ((y - L.mouth_y - 0.0045) / 0.0052) ** 2)
    d += 0.0055 * lf * np.exp(-(x / 0.019) ** 4 - ((y - L.mouth_y + 0.0065) / 0.0060) ** 2)
    d -= 0.0015 * np.exp(-(x / 0.024) ** 4 - ((y - L.mouth_y) / 0.0012) ** 2)
    d -= 0.0030 * gauss(x, y, 0.0, L.mouth_y - 0.017, 0.016, 0.004)  # below the lower lip
    d += 0.0050 * gauss(x, y, 0.0, L.chin_y + 0.006, 0.022, 0.012)
    return d


def _skin_colors(P: np.ndarray, theta: np.ndarray, L: FaceLayout, p: FaceParams) -> np.ndarray:
    """Skin tone with lips, brows, hair, nostrils and soft shading of the sockets painted on."""
    x, y = P[:, 0], P[:, 1]
    skin = np.array(p.skin)
    col = np.tile(skin, (len(P), 1))

    def paint(mask: np.ndarray, rgb) -> None:
        col[:] = col * (1 - mask[:, None]) + np.asarray(rgb)[None, :] * mask[:, None]

    for s in (-1.0, 1.0):
        paint(0.12 * gauss(x, y, s * 0.045, -0.02, 0.016, 0.014), (0.85, 0.45, 0.42))  # cheek blush
        paint(0.22 * gauss(x, y, s * L.eye_x, L.eye_y, 0.016, 0.011), skin * 0.72)  # socket shadow
        paint(0.6 * gauss(x, y, s * 0.0062 * p.nose_width, L.nose_tip_y - 0.0045, 0.0024, 0.0015),
              (0.30, 0.14, 0.12))  # nostrils
        # brows: an arched band above each eye, thinning outwards
        u = (s * x - 0.011) / 0.042
        on = (u > 0) & (u < 1)
        centre = L.brow_y + 0.006 * np.sin(np.pi * np.clip(u, 0, 1) ** 0.8) - 0.001
        half = 0.0032 * p.brow_thickness * (1.0 - 0.55 * np.clip(u, 0, 1))
        band = smoothstep(half + 0.0012, half - 0.0008, np.abs(y - centre)) * on
        band *= smoothstep(0.0, 0.08, u) * smoothstep(1.0, 0.85, u)
        paint(0.92 * band, p.brows)
    # lips: vermilion above and below the mouth line, with a cupid's bow
    w = L.mouth_w + 0.0015
    r = np.clip(1 - (x / w) ** 2, 0, 1)
    lf = p.lip_fullness
    upper_h = 0.0078 * lf * r ** 0.55 - 0.0016 * np.exp(-(x / 0.0035) ** 2) * r
    lower_h = 0.0098 * lf * r ** 0.5
    dy = y - L.mouth_y
    lips = np.where(dy >= 0, smoothstep(upper_h + 0.0006, upper_h - 0.0006, dy),
                    smoothstep(lower_h + 0.0008, lower_h - 0.0008, -dy)) * (r > 0)
    paint(lips, p.lips)
    # hair: above a hairline that falls from the forehead to the temples and the nape
    at = np.degrees(np.abs(theta))
    line = _hairline(at, p)
    soft = 0.003 + 0.005 * smoothstep(40, 90, at)
    paint(smoothstep(line - soft, line + soft, y), p.hair)
    return col


def build_skin(mesh: HeadMesh, L: FaceLayout, p: FaceParams, cols: int = 136, rows: int = 116) -> dict:
    """The head surface: a longitude/latitude grid, denser on the face, split along the mouth line."""
    theta = _density_samples(-np.pi, np.pi, cols + 1, [(0.0, 0.55, 5.0), (0.0, 0.2, 3.0)])[:-1]
    phi_m = _latitude_of(L.mouth_y / L.ay)
    phi_brow, phi_hair = _latitude_of(L.brow_y / L.ay), _latitude_of(0.075 / L.ay)
    phi = _density_samples(-1.45, 1.45, rows, [(-0.2, 0.45, 4.0), (phi_m, 0.08, 3.0), (phi_brow, 0.08, 3.0),
                                                (phi_hair, 0.1, 2.0)])
    j_m = int(np.argmin(np.abs(phi - phi_m)))
    phi[j_m] = phi_m  # the mouth line is a row of the grid
    T, F = np.meshgrid(theta, phi)
    P = _head_surface(T, F, L, p)
    P[..., 2] += _face_relief(P, L, p) * np.clip(np.cos(T), 0, 1) ** 2
    # hair stands out from the skull a little
    hair_line = _hairline(np.degrees(T), p)
    radial = P / np.linalg.norm(P, axis=-1, keepdims=True)
    P += radial * (0.004 * smoothstep(hair_line, hair_line + 0.015, P[..., 1]))[..., None]

    grid = P.reshape(-1, 3)
    slit_cols = np.nonzero(np.abs(P[j_m, :, 0]) < L.mouth_w)[0]
    tris = _grid_triangles(rows, cols, 0, wrap=True)
    # the mouth: quads just below the mouth line use copies of its slit vertices, so the lips can part
    on_line = tris // cols == j_m
    cell_row = np.repeat(np.arange(rows - 1), cols * 2)  # row of the cell each triangle belongs to
    lower_cells = cell_row == j_m - 1
    remap = np.arange(rows * cols + len(slit_cols))
    remap[j_m * cols + slit_cols] = rows * cols + np.arange(len(slit_cols))
    tris = np.where(lower_cells[:, None] & on_line, remap[tris], tris)
    verts = np.concatenate([grid, P[j_m, slit_cols]])
    # caps at the poles
    bottom, top = len(verts), len(verts) + 1
    verts = np.concatenate([verts, [[0.0, P[0, :, 1].mean() - 0.002, P[0, :, 2].mean()],
                                    [0.0, P[-1, :, 1].mean() + 0.002, P[-1, :, 2].mean()]]])
    i = np.arange(cols)
    i2 = (i + 1) % cols
    caps = np.concatenate([np.stack([np.full(cols, bottom), i2, i], -1),
                           np.stack([np.full(cols, top), (rows - 1) * cols + i, (rows - 1) * cols + i2], -1)])
    tris = np.concatenate([tris, caps])
    theta_all = np.concatenate([T.reshape(-1), theta[slit_cols], [0.0, 0.0]])
    colors = _skin_colors(verts, theta_all, L, p)
    sl = mesh.add(SKIN, verts, tris, colors)
    # which side of the mouth line a vertex is on: +1 above, -1 below, 0 on the line beside the slit
    side = np.sign(np.repeat(np.arange(rows) - j_m, cols)).astype(np.float64)
    side[j_m * cols + slit_cols] = 1.0
    side = np.concatenate([side, -np.ones(len(slit_cols)), [-1.0, 1.0]])
    return {"slice": sl, "side": side, "theta": theta_all}


# --- eyes, lids, mouth interior, neck, ears --------------------------------------------------------------

_UPPER_FAR, _LOWER_FAR, _LID_SPAN = 78.0, -78.0, 82.0


def upper_edge(beta: np.ndarray, state: str) -> np.ndarray:
    """Elevation (degrees) of the upper lid's edge at azimuth beta (degrees) in a lid state."""
    b = (beta / _LID_SPAN) ** 2
    return {"open": 19.0 - 30.0 * b, "closed": -9.0 - 8.0 * b, "wide": 36.0 - 32.0 * b,
            "squint": 11.0 - 28.0 * b, "down": 5.0 - 26.0 * b, "up": 28.0 - 31.0 * b}[state]


def lower_edge(beta: np.ndarray, state: str) -> np.ndarray:
    b = (beta / _LID_SPAN) ** 2
    return {"open": -29.0 + 22.0 * b, "closed": -15.0 + 8.0 * b, "wide": -34.0 + 24.0 * b,
            "squint": -17.0 + 14.0 * b, "cheek": -23.0 + 18.0 * b}[state]


def _sphere_point(centre: np.ndarray, radius: float, elevation: np.ndarray, azimuth: np.ndarray) -> np.ndarray:
    e, a = np.radians(elevation), np.radians(azimuth)
    return centre + radius * np.stack([np.cos(e) * np.sin(a), np.sin(e), np.cos(e) * np.cos(a)], -1)


def lid_points(centre: np.ndarray, radius: float, t: np.ndarray, beta: np.ndarray, edge: np.ndarray,
                far: float) -> np.ndarray:
    return _sphere_point(centre, radius, edge + t * (far - edge), beta)


def build_eye(mesh: HeadMesh, centre: np.ndarray, L: FaceLayout, p: FaceParams) -> dict:
    """An eyeball (iris and pupil around +z) with an upper and a lower lid shell in front of it."""
    polar = np.array([0, 5, 10.5, 12.0, 16, 21, 26, 28.5, 30.5, 34, 42, 55, 70, 90, 115, 145, 180], float)
    az = np.linspace(0, 2 * np.pi, 33)[:-1]
    pa, aa = np.meshgrid(np.radians(polar), az, indexing="ij")
    ball = centre + L.eye_r * np.stack([np.sin(pa) * np.cos(aa), np.sin(pa) * np.sin(aa), np.cos(pa)], -1)
    deg = np.repeat(polar, len(az))
    iris = np.array(p.iris)
    colors = np.where((deg < 11)[:, None], [0.03, 0.03, 0.03],
                      np.where((deg < 27)[:, None], iris * (1 + 0.25 * np.cos(deg / 3.0)[:, None]),
                               np.where((deg < 30)[:, None], iris * 0.45, [0.94, 0.92, 0.89])))
    tris = _grid_triangles(len(polar), len(az), 0, wrap=True)
    tris = tris[:, ::-1]  # polar grows away from +z: flip so the ball faces outwards
    ball_sl = mesh.add(EYEBALL, ball.reshape(-1, 3), tris, np.clip(colors, 0, 1))

    beta = np.linspace(-_LID_SPAN, _LID_SPAN, 29)
    t = np.linspace(0.0, 1.0, 11) ** 1.6  # denser rows at the lid's edge
    tt, bb = np.meshgrid(t, beta, indexing="ij")
    skin = np.array(p.skin)
    lids = {}
    for part, radius_scale, edge, far in ((UPPER_LID, 1.10, upper_edge, _UPPER_FAR),
                                          (LOWER_LID, 1.065, lower_edge, _LOWER_FAR)):
        radius = L.eye_r * radius_scale
        pts = lid_points(centre, radius, tt, bb, edge(bb, "open"), far)
        shade = skin * (0.93 if part == UPPER_LID else 0.97)
        edge_col = np.array([0.10, 0.07, 0.06]) if part == UPPER_LID else skin * np.array([0.95, 0.75, 0.72])
        rim = (tt < 0.05)[..., None]
        cols = np.where(rim, edge_col, shade).reshape(-1, 3)
        tris = _grid_triangles(len(t), len(beta), 0, wrap=False)
        if part == LOWER_LID:
            tris = tris[:, ::-1]
        sl = mesh.add(part, pts.reshape(-1, 3), tris, cols)
        lids[part] = {"slice": sl, "t": tt.reshape(-1), "beta": bb.reshape(-1), "radius": radius, "far": far}
    return {"ball": ball_sl, "lids": lids, "centre": centre}


def _ellipsoid(centre, radii, rows: int, cols: int, lat_range=(-90.0, 90.0), lon_range=(-180.0, 180.0)):
    lat = np.radians(np.linspace(*lat_range, rows))
    full = lon_range == (-180.0, 180.0)
    lon = np.radians(np.linspace(*lon_range, cols + (1 if full else 0)))
    lon = lon[:-1] if full else lon
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    pts = np.asarray(centre) + np.asarray(radii) * np.stack(
        [np.cos(la) * np.sin(lo), np.sin(la), np.cos(la) * np.cos(lo)], -1)
    return pts.reshape(-1, 3), _grid_triangles(rows, len(lon), 0, wrap=full)


def build_mouth_interior(mesh: HeadMesh, L: FaceLayout, lip_z: float) -> dict:
    out = {}
    # a dark cavity behind the lips, open towards the camera
    pts, tris = _ellipsoid((0.0, L.mouth_y - 0.004, lip_z - 0.016), (0.030, 0.026, 0.022), 18, 24,
                           lat_range=(-88, 88), lon_range=(95, 265))
    out["cavity"] = mesh.add(CAVITY, pts, tris, (0.16, 0.05, 0.06))
    # teeth: arcs just behind the lips
    for part, top, bottom in ((UPPER_TEETH, 0.0085, -0.0008), (LOWER_TEETH, 0.0006, -0.0085)):
        ang = np.radians(np.linspace(-68, 68, 27))
        ys = L.mouth_y + np.linspace(bottom, top, 4)
        a_, y_ = np.meshgrid(ang, ys, indexing="ij")
        arc = np.stack([0.024 * np.sin(a_), y_, lip_z - 0.0095 - 0.024 * (1 - np.cos(a_)) * 1.1], -1)
        shade = np.where((np.abs(np.degrees(a_)) > 45)[..., None], 0.80, 1.0)  # back teeth in shadow
        out[part] = mesh.add(part, arc.reshape(-1, 3), _grid_triangles(len(ang), len(ys), 0, False),
                             (np.array([0.93, 0.91, 0.84]) * shade).reshape(-1, 3))
    pts, tris = _ellipsoid((0.0, L.mouth_y - 0.0095, lip_z - 0.027), (0.0165, 0.0055, 0.022), 10, 18)
    out[TONGUE] = mesh.add(TONGUE, pts, tris, (0.74, 0.36, 0.38))
    return out


def build_neck_and_ears(mesh: HeadMesh, L: FaceLayout, p: FaceParams) -> None:
    ang = np.linspace(0, 2 * np.pi, 41)[:-1]
    ys = np.linspace(-0.30, -0.04, 8)
    a_, y_ = np.meshgrid(ang, ys, indexing="ij")
    neck = np.stack([0.057 * np.sin(a_), y_, -0.016 + 0.052 * np.cos(a_)], -1).transpose(1, 0, 2)
    mesh.add(NECK, neck.reshape(-1, 3), _grid_triangles(len(ys), len(ang), 0, True), np.array(p.skin) * 0.9)
    for s in (-1.0, 1.0):
        pts, tris = _ellipsoid((0.0, 0.0, 0.0), (0.006, 0.029, 0.017), 10, 14)
        pts = pts @ rotation("y", s * 20).T + np.array([s * (L.ax - 0.002), -0.004, -0.012])
        col = np.array(p.skin) * 0.95
        mesh.add(EAR, pts, tris, col)
