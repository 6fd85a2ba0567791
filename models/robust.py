"""Training for faces as a camera sees them, not for a data set (issue 15).

Each piece is off by default and switched on by its own train.py flag:

framing jitter (--framing-jitter)   the crop's scale and centre drawn from the spread of the
                                    pipeline detector's own boxes (models/framing.json, `make
                                    framing`), instead of one fixed crop with a uniform jitter
camera degradations (--camera-aug P) each image, with probability P, seen through one or more
                                    of the camera conditions of `edge eval --camera` (distance,
                                    blur, motion, sensor noise, low light, MJPEG, white balance,
                                    grey camera, yaw), at training parameters drawn from ranges
                                    that differ from the test suite's fixed values
occluders (--occlude P)             glasses, a hand or a cap drawn over the face, from ranges
                                    of position, size, tint and colour (not the test's shapes)
random erasing (--erase P)          a random rectangle of noise or grey (Zhong et al. 2020)
mixup (--mixup ALPHA)               pairs of images and their targets blended (Zhang et al. 2018)
FER+ soft targets (--ferplus)       emotion targets from the ten FER+ annotators' votes
balanced sampling (--balance POWER) each epoch draws images with probability ∝ class
                                    frequency^-POWER (emotion class; age category for the
                                    age and gender heads)

All of it works on batches of N x C x H x W float images in [0, 1] (grey, or Y, Cb, Cr) and
draws its randomness from the torch.Generator it is given, so a seed repeats a run.
"""
from __future__ import annotations

import csv
import io
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import data
from net import images_tensor

FRAMING = Path(__file__).resolve().parent / "framing.json"

# The framing measurement behind each task's crop in framing.json.
FRAMING_SET = {"emotion": "fer2013", "age": "utkface", "gender": "utkface_whole"}

# A normal distribution's interquartile range is 1.349 standard deviations.
IQR_SIGMAS = 1.349


def framing_jitter(task: str, path: Path = FRAMING) -> dict[str, float]:
    """The spread of the detector's box relative to the face on the task's training crops,
    as standard deviations: of the log of the crop scale, and of the crop centre's offset
    in units of the crop's side. From the interquartile ranges `edge models framing`
    measured (scale_iqr, offset_x_iqr, offset_y_iqr); a measurement without offset ranges
    (made before they were recorded) takes the scale's relative spread for the offsets."""
    m = json.loads(path.read_text())["measured"][FRAMING_SET[task]]
    lo, hi = m["scale_iqr"]
    s_scale = math.log(hi / lo) / IQR_SIGMAS
    out = {"log_scale": s_scale}
    for k in ("offset_x", "offset_y"):
        iqr = m.get(f"{k}_iqr")
        # offsets are in units of the box side; the crop is scale box sides wide
        out[k] = (iqr[1] - iqr[0]) / IQR_SIGMAS / m["scale"] if iqr else s_scale
    return out


def jitter_theta(n: int, g: torch.Generator, sig: dict[str, float], strength: float = 1.0) -> tuple[torch.Tensor, ...]:
    """Per image: a zoom factor (>1 zooms out) and a shift of the crop centre in
    affine_grid units (the image spans -1..1), drawn from the detector's spread."""
    scale = torch.exp(torch.randn(n, generator=g) * sig["log_scale"] * strength)
    tx = torch.randn(n, generator=g) * sig["offset_x"] * 2 * strength
    ty = torch.randn(n, generator=g) * sig["offset_y"] * 2 * strength
    return scale, tx, ty


# --- camera degradations -------------------------------------------------------------------
#
# The test suite (camera/scene, `edge eval --camera`) uses fixed values in frame pixels:
# faces of 40-56 px, focus sigma 1.6, motion 9 px, noise sigma 10, light 1/4 with gamma 1.3,
# MJPEG q30 and q60, casts 1.25/1/0.7 and 0.8/1/1.25, roll 10 and 20, yaw 0.25. Training
# draws each from a continuous range in the model's input pixels instead.
TRAIN_RANGES = {
    "distance": (0.4, 0.85),    # shrink factor of the crop before it is enlarged back
    "focus": (0.4, 1.3),        # Gaussian sigma, input pixels
    "motion": (2.0, 6.0),       # streak length, input pixels
    "noise": (2.0, 9.0),        # sigma, grey levels
    "light": (0.2, 0.6),        # exposure before the gain
    "gamma": (0.8, 1.4),
    "jpeg": (35, 95),           # quality
    "cast": (0.75, 1.3),        # R and B gains against G
    "yaw": (0.72, 0.95),        # horizontal squeeze
}
DEGRADATIONS = ["distance", "focus", "motion", "noise", "light", "jpeg", "cast", "grey", "yaw"]


def _u(g: torch.Generator, lo: float, hi: float, n: int = 1) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def _gauss_kernel(sigma: float) -> torch.Tensor:
    r = max(1, math.ceil(3 * sigma))
    d = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-d * d / (2 * sigma * sigma))
    return k / k.sum()


def _motion_kernel(length: float, angle: float) -> torch.Tensor:
    """A 2-D line of the given length through the centre, anti-aliased by supersampling."""
    r = math.ceil(length / 2)
    k = torch.zeros(2 * r + 1, 2 * r + 1)
    for t in np.linspace(-length / 2, length / 2, 8 * (2 * r + 1)):
        x, y = r + t * math.cos(angle), r + t * math.sin(angle)
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            if 0 <= x0 + dx <= 2 * r and 0 <= y0 + dy <= 2 * r:
                k[y0 + dy, x0 + dx] += w
    return k / k.sum()


def _conv(x: torch.Tensor, k2: torch.Tensor) -> torch.Tensor:
    """Convolve every channel with the 2-D kernel k2, edges replicated."""
    c = x.shape[1]
    r = k2.shape[-1] // 2
    w = k2.to(x).expand(c, 1, *k2.shape)
    return F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), w, groups=c)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """JFIF full range, as Go's image/color and PIL use: [0, 1] in and out."""
    y, cb, cr = x[:, 0:1], x[:, 1:2] - 0.5, x[:, 2:3] - 0.5
    return torch.cat([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return torch.cat([0.299 * r + 0.587 * g + 0.114 * b,
                      0.5 - 0.168736 * r - 0.331264 * g + 0.5 * b,
                      0.5 + 0.5 * r - 0.418688 * g - 0.081312 * b], 1)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Each image through a JPEG encoder at quality and back (4:2:0 chroma for colour)."""
    out = []
    for img in (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy():
        buf = io.BytesIO()
        if img.shape[2] == 1:
            Image.fromarray(img[:, :, 0], "L").save(buf, "JPEG", quality=int(quality))
        else:
            Image.fromarray(img, "YCbCr").save(buf, "JPEG", quality=int(quality))
        buf.seek(0)
        dec = Image.open(buf)
        if img.shape[2] == 3:
            dec.draft("YCbCr", dec.size)
            dec = dec.convert("YCbCr")
        a = np.asarray(dec, dtype=np.uint8)
        out.append(a[:, :, None] if a.ndim == 2 else a)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div(255).to(x.device)


def degrade(x: torch.Tensor, g: torch.Generator, p: float, which: list[str] | None = None) -> torch.Tensor:
    """Camera degradations for training: each degradation in `which` (default all) hits a
    random share p / 2 of the batch (so with p = 1 an image meets about half of them; the
    combined test condition is covered), with one parameter drawn per batch from
    TRAIN_RANGES (per image for noise, light and gamma). x: N x C x H x W in [0, 1]."""
    n, c, h, w = x.shape
    which = DEGRADATIONS if which is None else which
    x = x.clone()

    def pick() -> torch.Tensor:
        return torch.rand(n, generator=g) < p / 2

    for d in which:
        m = pick()
        if not m.any():
            continue
        xs = x[m]
        if d == "distance":
            f = float(_u(g, *TRAIN_RANGES["distance"]))
            s = max(4, round(h * f))
            small = F.interpolate(xs, size=(s, s), mode="area")
            xs = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        elif d == "focus":
            k = _gauss_kernel(float(_u(g, *TRAIN_RANGES["focus"])))
            xs = _conv(xs, torch.outer(k, k))
        elif d == "motion":
            ang = float(_u(g, -math.pi / 6, math.pi / 6))
            xs = _conv(xs, _motion_kernel(float(_u(g, *TRAIN_RANGES["motion"])), ang))
        elif d == "noise":
            sig = _u(g, *TRAIN_RANGES["noise"], n=len(xs)).view(-1, 1, 1, 1) / 255
            xs = xs + torch.randn(xs.shape, generator=g) * sig
        elif d == "light":
            k = len(xs)
            light = _u(g, *TRAIN_RANGES["light"], n=k).view(-1, 1, 1, 1)
            gamma = _u(g, *TRAIN_RANGES["gamma"], n=k).view(-1, 1, 1, 1)
            rgb = ycbcr_to_rgb(xs) if c == 3 else xs
            dim = rgb * light * 255 + torch.randn(rgb.shape, generator=g) * 2
            rgb = (torch.round(dim.clamp(0, 255)) / (light * 255)).clamp(0, 1) ** gamma
            xs = rgb_to_ycbcr(rgb) if c == 3 else rgb
        elif d == "jpeg":
            xs = jpeg(xs, int(_u(g, *TRAIN_RANGES["jpeg"])))
        elif d == "cast":
            gains = _u(g, *TRAIN_RANGES["cast"], n=2)
            if c == 3:
                rgb = ycbcr_to_rgb(xs) * torch.tensor([float(gains[0]), 1.0, float(gains[1])]).view(1, 3, 1, 1)
                xs = rgb_to_ycbcr(rgb.clamp(0, 1))
            else:  # on a grey camera a cast changes the luma a little
                xs = xs * (0.299 * float(gains[0]) + 0.587 + 0.114 * float(gains[1]))
        elif d == "grey":
            if c == 3:
                xs[:, 1:] = 0.5  # what edge feeds a colour model from a grey camera
        elif d == "yaw":
            sq = float(_u(g, *TRAIN_RANGES["yaw"]))
            theta = torch.tensor([[1 / sq, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(len(xs), 2, 3)
            grid = F.affine_grid(theta, list(xs.shape), align_corners=False)
            xs = F.grid_sample(xs - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5
        else:
            raise ValueError(f"unknown degradation {d!r} (known: {DEGRADATIONS})")
        x[m] = xs.clamp(0, 1)
    return x


# --- occluders -------------------------------------------------------------------------------
#
# What covers part of a face in front of a camera: glasses and sunglasses, a hand at the
# mouth or cheek, a cap or hat. The test suite draws one fixed shape of each (camera/scene:
# lens tint 0.3, frame grey 20, eyes at 0.42 of the aligned crop, cap to 0.2 of it);
# training draws position, size, tint, thickness and colour from ranges around where the
# faces' features are in the model's own crop, so that no test shape is learnt as such.
OCCLUDERS = ["glasses", "hand", "cap"]


def _ellipse_d(h: int, w: int, cx: torch.Tensor, cy: torch.Tensor, ax: torch.Tensor, ay: torch.Tensor,
               power: torch.Tensor | float = 2.0) -> torch.Tensor:
    """Per image (N), the normalised (super-)ellipse distance of every pixel: N x H x W, <= 1 inside."""
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    dx = ((xs.view(1, 1, w) - cx.view(-1, 1, 1)) / ax.view(-1, 1, 1)).abs()
    dy = ((ys.view(1, h, 1) - cy.view(-1, 1, 1)) / ay.view(-1, 1, 1)).abs()
    pw = torch.as_tensor(power, dtype=torch.float32).view(-1, 1, 1)
    return dx ** pw + dy ** pw


def occlude(x: torch.Tensor, g: torch.Generator, p: float) -> torch.Tensor:
    """Occluders for training: with probability p an image gets one of OCCLUDERS, drawn
    over it before the camera degradations (as the scene draws them on the face). x: N x C x
    H x W in [0, 1], grey or Y, Cb, Cr; colours are drawn in RGB and converted."""
    n, c, h, w = x.shape
    kind = torch.randint(0, len(OCCLUDERS), (n,), generator=g)
    hit = torch.rand(n, generator=g) < p
    if not hit.any():
        return x
    rgb = ycbcr_to_rgb(x) if c == 3 else x.expand(n, 3, h, w)
    out = rgb.clone()

    def paint(m: torch.Tensor, colour: torch.Tensor, alpha: torch.Tensor | float = 1.0) -> None:
        """Blend colour (N x 3) into the images where m (N x H x W) holds, by alpha (N or scalar)."""
        a = (m.float() * torch.as_tensor(alpha, dtype=torch.float32).view(-1, 1, 1)).unsqueeze(1)
        out.mul_(1 - a).add_(colour.view(-1, 3, 1, 1) * a)

    def grey(lo: float, hi: float, tint: float = 0.1) -> torch.Tensor:
        v = _u(g, lo, hi, n).view(n, 1)
        return (v * (1 + (torch.rand(n, 3, generator=g) * 2 - 1) * tint)).clamp(0, 1)

    sel = {k: hit & (kind == i) for i, k in enumerate(OCCLUDERS)}
    # glasses: two lenses (round to rectangular), a rim, a bridge; tint from clear to sunglasses.
    # A lens spans most of the way from the eye's centre to the nose (its half-width is
    # 0.55-0.9 of the eye's offset dx) and is a little over half as tall as it is wide:
    # sizes tied to the eyes, as on faces, rather than drawn apart from them.
    m = sel["glasses"]
    if m.any():
        ey, dx = _u(g, 0.32, 0.48, n), _u(g, 0.13, 0.22, n)
        ax = dx * _u(g, 0.55, 0.9, n)
        ay = ax * _u(g, 0.5, 0.8, n)
        power = torch.where(torch.rand(n, generator=g) < 0.5, 2.0, 4.0)
        rim = 1 - _u(g, 0.12, 0.45, n).view(-1, 1, 1)
        frame, lens = grey(0.0, 0.4), grey(0.0, 0.25)
        tint = torch.where(torch.rand(n, generator=g) < 0.3, _u(g, 0.6, 0.95, n), _u(g, 0.0, 0.45, n))
        for side in (-1.0, 1.0):
            d = _ellipse_d(h, w, 0.5 + side * dx, ey, ax, ay, power)
            paint((d <= rim) & m.view(-1, 1, 1), lens, tint)
            paint((d > rim) & (d <= 1) & m.view(-1, 1, 1), frame)
        bridge = _ellipse_d(h, w, torch.full((n,), 0.5), ey - ay * 0.3, (dx - ax).clamp(min=0.01), _u(g, 0.008, 0.02, n), 8.0)
        paint((bridge <= 1) & m.view(-1, 1, 1), frame)
    # hand: a skin-toned ellipse over the mouth, a cheek or the chin, with a darker rim
    m = sel["hand"]
    if m.any():
        centre = out[:, :, h // 2 - h // 8:h // 2 + h // 8, w // 2 - w // 8:w // 2 + w // 8].mean((2, 3))
        skin = (centre * _u(g, 0.85, 1.2, n).view(n, 1)).clamp(0, 1)
        cx = 0.5 + (torch.rand(n, generator=g) * 2 - 1) * 0.3
        cy = _u(g, 0.6, 0.95, n)
        ax, ay = _u(g, 0.16, 0.38, n), _u(g, 0.1, 0.26, n)  # a palm is about half a face wide
        d = _ellipse_d(h, w, cx, cy, ax, ay)
        paint((d <= 1) & m.view(-1, 1, 1), skin)
        paint((d > 0.75) & (d <= 1) & m.view(-1, 1, 1), skin * 0.8)
    # cap or hat: a crown over the top of the head to the brow, a darker brim below it
    m = sel["cap"]
    if m.any():
        top = _u(g, 0.08, 0.3, n)
        col = grey(0.05, 0.9, tint=0.4)
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
        crown = (ys.view(1, h, 1) < top.view(-1, 1, 1)).expand(n, h, w)
        paint(crown & m.view(-1, 1, 1), col)
        brim = _ellipse_d(h, w, 0.5 + (torch.rand(n, generator=g) * 2 - 1) * 0.05, top, _u(g, 0.3, 0.55, n),
                          _u(g, 0.02, 0.06, n))
        paint((brim <= 1) & m.view(-1, 1, 1), col * _u(g, 0.5, 0.8, n).view(n, 1))
    out = rgb_to_ycbcr(out.clamp(0, 1))[:, :c]  # a grey image keeps the luma
    return torch.where(hit.view(-1, 1, 1, 1), out.clamp(0, 1), x)


def degraded_copy(x: np.ndarray, seed: int, occlude_p: float = 0.5, degrade_p: float = 1.0) -> np.ndarray:
    """uint8 images (N x H x W grey or N x H x W x 3) through the training occluders and camera
    degradations, one fixed draw: a val set that says, epoch after epoch, how a checkpoint
    holds up through a camera (train.py --select camera) without touching the test suite."""
    g = torch.Generator().manual_seed(10_000 + seed)
    t = images_tensor(x)
    out = []
    for i in range(0, len(t), 256):
        out.append(degrade(occlude(t[i:i + 256], g, occlude_p), g, degrade_p))
    d = (torch.cat(out).clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    d = d[:, 0] if x.ndim == 3 else d.permute(0, 2, 3, 1)
    return np.ascontiguousarray(d.numpy())


def random_erase(x: torch.Tensor, g: torch.Generator, p: float, area: tuple[float, float] = (0.02, 0.25),
                 ratio: tuple[float, float] = (0.3, 3.3)) -> torch.Tensor:
    """Random erasing: with probability p per image, a rectangle of area fraction in `area`
    and aspect ratio in `ratio` (log-uniform) is filled with uniform noise (or, for half of
    them, mid grey: what the pipeline fills beyond the frame)."""
    n, c, h, w = x.shape
    x = x.clone()
    for i in range(n):
        if float(torch.rand(1, generator=g)) >= p:
            continue
        a = float(_u(g, *area)) * h * w
        r = math.exp(float(_u(g, math.log(ratio[0]), math.log(ratio[1]))))
        eh, ew = min(h, max(1, round(math.sqrt(a * r)))), min(w, max(1, round(math.sqrt(a / r))))
        y0 = int(torch.randint(0, h - eh + 1, (1,), generator=g))
        x0 = int(torch.randint(0, w - ew + 1, (1,), generator=g))
        if float(torch.rand(1, generator=g)) < 0.5:
            x[i, :, y0:y0 + eh, x0:x0 + ew] = torch.rand(c, eh, ew, generator=g)
        else:
            x[i, :, y0:y0 + eh, x0:x0 + ew] = 0.5
    return x


def mixup(x: torch.Tensor, targets: dict[str, torch.Tensor], g: torch.Generator,
          alpha: float) -> tuple[torch.Tensor, dict[str, torch.Tensor], float]:
    """Mixup: the batch blended with a permutation of itself by lam ~ Beta(alpha, alpha),
    the targets of every head by the same lam. Returns the mixed batch, targets and lam."""
    if alpha <= 0:
        return x, targets, 1.0
    # Beta from two Gammas, drawn from g so that a seed repeats it.
    a = torch._standard_gamma(torch.full((2,), float(alpha)), generator=g)
    lam = float(a[0] / a.sum())
    perm = torch.randperm(len(x), generator=g)
    mixed = {h: lam * t + (1 - lam) * t[perm] for h, t in targets.items()}
    return lam * x + (1 - lam) * x[perm], mixed, lam


# --- FER+ ----------------------------------------------------------------------------------

FERPLUS_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]
# FER+ class -> our emotion label; contempt, unknown and NF (not a face) have none.
FERPLUS_TO_OURS = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
                   "anger": "angry", "disgust": "disgust", "fear": "fear"}


def ferplus_votes(names: list[str], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The FER+ votes for the images `names` (paths inside the FER2013 archive, in the
    order the loader returns them), from ferplus_<split>.csv: N x 10 counts in
    FERPLUS_COLUMNS order, and whether the image has votes at all."""
    rows: dict[str, list[str]] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows[r["file"]] = [r[c] for c in FERPLUS_COLUMNS]
    votes = np.zeros((len(names), len(FERPLUS_COLUMNS)), dtype=np.float32)
    has = np.zeros(len(names), dtype=bool)
    for i, name in enumerate(names):
        r = rows.get(name)
        if r is None:
            raise ValueError(f"{path}: no row for {name}: the votes are not aligned with this archive")
        if all(v != "" for v in r):
            votes[i] = [float(v) for v in r]
            has[i] = True
    return votes, has


def ferplus_targets(votes: np.ndarray, has: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Soft emotion targets (N x 7, data.EMOTIONS order) from FER+ votes, and which images
    to train on. Our decisions: votes for contempt and unknown are dropped and the rest
    renormalised (the model has no such class; folding contempt into disgust or anger would
    invent labels the annotators did not give); images without votes, whose top vote is
    not-a-face, or whose votes all went to contempt, unknown or not-a-face are not trained
    on (nothing to learn an emotion from)."""
    idx = [FERPLUS_COLUMNS.index(c) for c in FERPLUS_TO_OURS]
    order = [data.EMOTIONS.index(FERPLUS_TO_OURS[c]) for c in FERPLUS_TO_OURS]
    ours = votes[:, idx]
    total = ours.sum(1)
    nf = votes[:, FERPLUS_COLUMNS.index("NF")]
    keep = has & (total > 0) & ~(nf >= votes.max(1))
    t = np.zeros((len(votes), len(data.EMOTIONS)), dtype=np.float32)
    t[:, order] = ours / np.maximum(total, 1)[:, None]
    return t, keep


def fer_names(split: str) -> list[str]:
    """The archive paths of FER2013's images in the order data.load_fer returns them."""
    with tarfile.open(data.data_dir() / "fer2013" / f"{split}.tar.gz") as tf:
        return [m.name for m in tf if m.isfile()]


# --- sampling --------------------------------------------------------------------------------

def balance_weights(groups: np.ndarray, power: float) -> np.ndarray:
    """Sampling weight per image ∝ frequency(group)^-power: 0 draws as the data
    set is, 1 draws every group equally often."""
    freq = np.bincount(groups).astype(np.float64)
    w = freq[groups] ** -power
    return w / w.sum()


def epoch_order(n: int, g: torch.Generator, keep: np.ndarray | None = None,
                weights: np.ndarray | None = None) -> torch.Tensor:
    """The training images of one epoch, in order: a permutation of all (as train.py always
    did), of the kept ones, or — with weights — as many draws with replacement by weight."""
    if keep is None and weights is None:
        return torch.randperm(n, generator=g)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).copy()
    if keep is not None:
        w[~keep] = 0
    rows = np.flatnonzero(w > 0)
    if weights is None:
        return torch.from_numpy(rows)[torch.randperm(len(rows), generator=g)]
    return torch.multinomial(torch.from_numpy(w / w.sum()), len(rows), replacement=True, generator=g)
