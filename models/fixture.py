"""A small synthetic data set in the layouts of ../shared/data, for `make test-smoke`:

    python3 models/fixture.py --out build/smoke/data

writes fer2013/{train,val}.tar.gz (48x48 grey JPEGs as `<emotion>/<name>.jpg`) and
utkface/{train,val}.tar.gz (200x200 colour JPEGs named `<age>_<gender>_<race>_<date>.jpg.chip.jpg`).
The smoke training reads it through data.py's loaders (EDGE_DATA) exactly as it
reads the real data sets, so the code path is the same without ../shared and without
decoding tens of thousands of images. The pictures are not faces: each is a smooth
random background with a shape whose position, size and tint follow its labels, so
a few batches of training move the predictions off chance and the exporter's
int8/float agreement is judged on a model with some signal. Figures measured on it
check the code path; they say nothing about the real models.
"""
from __future__ import annotations

import argparse
import io
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402

# Per class: train and val images. 256 training images cover the smoke's 3 batches
# of 64 and export's --calib 256; val is large enough that one flipped prediction
# does not fail the exporter's 0.99 agreement bar on its own.
FER_COUNTS = {"train": 37, "val": 40}  # x 7 emotions: 259 and 280
UTK_COUNTS = {"train": 260, "val": 300}
# ages spread over all five age categories
UTK_AGES = [3, 9, 15, 24, 31, 37, 45, 52, 58, 63, 71, 77, 84, 92]


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    """Smooth random grey field in [60, 190]: coarse noise upsampled bilinearly."""
    coarse = rng.uniform(60, 190, (6, 6)).astype(np.float32)
    img = Image.fromarray(coarse).resize((side, side), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _blob(side: int, cx: float, cy: float, r: float) -> np.ndarray:
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) + 0.5
    return np.exp(-(((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * r * r)))


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    mode = "L" if img.ndim == 2 else "RGB"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def fer_image(rng: np.random.Generator, label: int) -> np.ndarray:
    """48x48 grey: a bright spot on a circle, its angle given by the emotion."""
    a = 2 * np.pi * label / len(data.EMOTIONS) + rng.normal(0, 0.15)
    level = 30 * (label - 3)
    img = _background(rng, 48) * 0.5 + 64 + level + 70 * _blob(48, 24 + 13 * np.cos(a), 24 + 13 * np.sin(a), 5)
    return img + rng.normal(0, 6, img.shape)


def utk_image(rng: np.random.Generator, age: int, female: int, race: int) -> np.ndarray:
    """200x200 RGB: a disc whose size grows with age, whose tint (red or blue) gives
    the gender and whose brightness varies with race."""
    r = 18 + 50 * min(age, 90) / 90 + rng.normal(0, 3)
    disc = _blob(200, 100 + rng.normal(0, 6), 100 + rng.normal(0, 6), r)
    grey = _background(rng, 200) + (40 + 8 * race) * disc
    tint = np.array([30, 0, -30] if female else [-30, 0, 30], dtype=np.float32)
    img = grey[..., None] + disc[..., None] * tint
    return img + rng.normal(0, 5, img.shape)


def _add(tf: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(payload), 0
    tf.addfile(info, io.BytesIO(payload))


def write(out: Path, seed: int = 0, scale: float = 1.0) -> dict[str, int]:
    """Writes the four archives under out (scale < 1: fewer images, for unit tests);
    returns the image count of each."""
    counts = {}
    fer = {k: max(1, round(v * scale)) for k, v in FER_COUNTS.items()}
    utk = {k: max(len(UTK_AGES) * 2, round(v * scale)) for k, v in UTK_COUNTS.items()}
    for split, n in fer.items():
        rng = np.random.default_rng([seed, 0, len(split)])
        items = [(k, i) for i in range(n) for k in range(len(data.EMOTIONS))]  # classes interleaved
        path = out / "fer2013" / f"{split}.tar.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w:gz") as tf:
            for k, i in items:
                _add(tf, f"{data.EMOTIONS[k]}/Smoke_{split}_{k}_{i:04d}.jpg", _jpeg(fer_image(rng, k)))
        counts[f"fer2013/{split}"] = len(items)
    for split, n in utk.items():
        rng = np.random.default_rng([seed, 1, len(split)])
        path = out / "utkface" / f"{split}.tar.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w:gz") as tf:
            for i in range(n):
                age, g, race = UTK_AGES[i % len(UTK_AGES)], i % 2, (i // 2) % len(data.RACES)
                # UTKFace's gender digit: 0 male, 1 female
                _add(tf, f"{age}_{g}_{race}_2017{i:010d}.jpg.chip.jpg", _jpeg(utk_image(rng, age, g, race)))
        counts[f"utkface/{split}"] = n
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder to write (the EDGE_DATA of the smoke run)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    counts = write(args.out, args.seed)
    print(f"fixture: synthetic images in the data sets' layouts under {args.out}: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
