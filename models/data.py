"""Loading FER2013 and UTKFace from ../shared/data into memory as uint8 arrays
(grey, or for colour models Y, Cb, Cr as Go's image.YCbCr holds them).

Images are decoded once and cached under build/cache (or $EDGE_CACHE) as .npz,
so later runs start in seconds; a cache file is named after the archive it came
from (path, size, modification time), so another EDGE_DATA, such as the smoke
training's synthetic fixture (fixture.py), never reads another data set's cache. The datasets' own crops are the models' framing: FER2013 is
kept at its native 48x48; UTKFace's 200x200 aligned crops are shrunk to the
model input size with the Go pipeline's own arithmetic (`area_resize`), from
the JPEG's own Y, Cb, Cr, so a model trains on the pixels edge will feed it.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

EMOTIONS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
AGE_BINS = ["0-19", "20-39", "40-59", "60-79", "80+"]
AGE_EDGES = [20, 40, 60, 80]  # lower bounds of bins 1..4
GENDERS = ["female", "male"]  # UTKFace encodes 0 = male, 1 = female
RACES = ["white", "black", "asian", "indian", "others"]
# The age and gender models see the central 80% of UTKFace's aligned 200x200
# crops: the face with a little hair and chin, less background.
UTK_CROP = 0.8

ROOT = Path(__file__).resolve().parent.parent
# v2: images decoded as Y, Cb, Cr and shrunk by exact area averaging (v1 went
# through RGB and PIL's BOX filter).
CACHE = ROOT / "build" / "cache" / "v2"


def data_dir() -> Path:
    return Path(os.environ.get("EDGE_DATA", ROOT.parent / "shared" / "data"))


def cache_path(name: str, src: Path) -> Path:
    """The cache file for the images of archive src decoded as `name`: keyed by the
    archive's resolved path, size and modification time."""
    st = src.stat()
    tag = hashlib.sha1(f"{src.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:10]
    return Path(os.environ.get("EDGE_CACHE", CACHE)) / f"{name}-{tag}.npz"


def _archive(dataset: str, split: str) -> Path:
    src = data_dir() / dataset / f"{split}.tar.gz"
    if not src.exists():
        raise SystemExit(f"{src}: not found. The data sets live in ../shared/data beside the checkout "
                         f"(or set EDGE_DATA to a folder laid out like it: fer2013/{{train,val}}.tar.gz, "
                         f"utkface/{{train,val}}.tar.gz); `python3 models/fixture.py --out DIR` writes a "
                         f"synthetic one for code-path checks")
    return src


def age_bin(age: int) -> int:
    return sum(age >= e for e in AGE_EDGES)


def area_resize(img: np.ndarray, x0: float, y0: float, side: float, size: int) -> np.ndarray:
    """The square of img (H x W, or H x W x C) at (x0, y0) with the given side,
    shrunk to size x size: each output pixel is the exact area average of the
    source pixels under it (fractional ones weighted by their overlap), rounded
    half up. This is pipeline.Crop's arithmetic when shrinking; PIL's BOX
    filter weights whole pixels instead and differs by about one grey level on
    average at 200 -> 64, which cost the colour gender model 0.3 points when
    trained on one and run on the other."""
    k = side / size
    h, w = img.shape[:2]
    if k < 1 or x0 < 0 or y0 < 0 or x0 + side > w or y0 + side > h:
        raise ValueError(f"area_resize: square ({x0}, {y0}) side {side} of a {w}x{h} image to {size}: "
                         "only shrinking inside the image is supported")

    def weights(lo: float, n: int) -> np.ndarray:
        edges = lo + k * np.arange(size + 1)
        left, right = edges[:-1, None], edges[1:, None]
        px = np.arange(n)[None, :]
        return np.clip(np.minimum(right, px + 1) - np.maximum(left, px), 0, None) / k

    wy, wx = weights(y0, h), weights(x0, w)
    out = np.einsum("uy,yx...,vx->uv...", wy, img.astype(np.float64), wx, optimize=True)
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def _decode(data: bytes, size: int, crop: float = 1.0, color: str = "gray") -> np.ndarray:
    """One image, its central `crop` fraction resized to size x size: H x W grey, or
    H x W x 3 Y, Cb, Cr (JFIF full range). A colour JPEG is decoded straight to
    Y, Cb, Cr, as Go's image/jpeg does, and its grey image is its Y plane,
    which is what the Go camera sources call luma."""
    img = Image.open(io.BytesIO(data))
    if img.format == "JPEG" and img.mode in ("RGB", "YCbCr"):
        img.draft("YCbCr", img.size)  # no round trip through RGB
    if color == "gray":
        img = img.getchannel(0) if img.mode == "YCbCr" else img.convert("L")
    else:
        img = img.convert("YCbCr")
    x = np.asarray(img, dtype=np.uint8)
    h, w = x.shape[:2]
    side = min(w, h) * crop
    return area_resize(x, (w - side) / 2, (h - side) / 2, side, size)


def load_fer(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns images N x 48 x 48 uint8 and labels (index into EMOTIONS)."""
    src = _archive("fer2013", split)
    cache = cache_path(f"fer_{split}", src)
    if cache.exists():
        z = np.load(cache)
        return z["x"], z["y"]
    xs, ys = [], []
    with tarfile.open(src) as tf:
        for m in tf:
            if not m.isfile():
                continue
            cls = m.name.split("/")[0]
            xs.append(_decode(tf.extractfile(m).read(), 48))
            ys.append(EMOTIONS.index(cls))
    x, y = np.stack(xs), np.array(ys, dtype=np.int64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, x=x, y=y)
    return x, y


def parse_utk(name: str) -> tuple[int, int, int]:
    """age, gender (index into GENDERS), race from a UTKFace file name."""
    f = os.path.basename(name).split(".")[0].split("_")
    age, g, race = int(f[0]), int(f[1]), int(f[2])
    return age, (1 - g), race


def load_utk(split: str, size: int, crop: float = UTK_CROP,
             color: str = "gray") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Returns images N x size x size (x 3 for "ycbcr") uint8 (the central `crop`
    fraction of each 200x200 image, resized), ages, genders, races."""
    src = _archive("utkface", split)
    cache = cache_path(f"utk_{split}_{size}_{crop:g}" + ("" if color == "gray" else f"_{color}"), src)
    if cache.exists():
        z = np.load(cache)
        return z["x"], z["age"], z["gender"], z["race"]
    xs, ages, genders, races = [], [], [], []
    with tarfile.open(src) as tf:
        for m in tf:
            if not m.isfile():
                continue
            a, g, r = parse_utk(m.name)
            xs.append(_decode(tf.extractfile(m).read(), size, crop, color))
            ages.append(a)
            genders.append(g)
            races.append(r)
    out = (np.stack(xs), np.array(ages), np.array(genders), np.array(races))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, x=out[0], age=out[1], gender=out[2], race=out[3])
    return out
