"""Train edge's classifiers on CPU or CUDA: `python3 models/train.py --task emotion|agegender|gender`.

emotion   : FER2013 48x48 grey, 7 classes.
agegender : UTKFace, one shared trunk with an age-category head (5 classes) and a
            gender head (2 classes); export.py writes each head as its own model.
gender    : UTKFace, the gender head alone (the whole trunk serves gender); --init
            may start it from an agegender checkpoint, whose age head is dropped.
age       : UTKFace, the age head alone (e.g. fine-tuning the shipped age model from
            models/importer.py's checkpoint of it).

Recipe: batched on-the-fly augmentation (flip, rotation, scale, shift,
brightness/contrast, cutout), label smoothing, mildly re-weighted rare classes
(disgust, 80+), AdamW with a one-cycle schedule, an exponential moving average
of the weights, early stopping on val, fixed seeds. Every epoch is logged; the
best checkpoint, a training-curve PNG and a val confusion-matrix PNG are written
to build/models/. `--init CKPT` starts a second one-cycle schedule from a trained
checkpoint (a warm restart), as `make models` does after the first; with another
`--input-size` the trained weights go on at that resolution, and with a deeper
`--trunk` the added convs start as identity maps (Net2Net deepening). `--init CKPT
--qat` fine-tunes a trained model as its int8 export computes it (qat.py).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import data
import robust
from net import COLORS, Arch, EdgeNet, count_macs, calibrate_batchnorm, images_tensor, init_identity, load_deepened, mirror_images

OUT = data.ROOT / "build" / "models"

# Trunks by size at 48x48: "base" (56 M multiply-adds) is the one to train where
# compute allows (a GPU, or hours of CPU); "small" (24 M) trains about twice as
# fast and fits the 60 M budget twice, so its models can flip-average.
TRUNKS = {
    "base": [(32, 1), (48, 2), (96, 2), (192, 2)],
    "small": [(16, 1), (32, 2), (64, 2), (128, 2)],
    # small with a third conv at the lowest resolution (29.5 M at 48x48: twice, flip-averaged, within
    # 60 M); grown from a trained small network with --init, the added conv starting as an identity map
    "small-deep": [(16, 1), (32, 2), (64, 2), (128, 3)],
}
HEADS = {"emotion": {"emotion": 7}, "agegender": {"age": 5, "gender": 2}, "gender": {"gender": 2}, "age": {"age": 5}}


def make_arch(task: str, trunk: str, input_size: int = 48) -> Arch:
    return Arch(input_size=input_size, stages=TRUNKS[trunk], heads=HEADS[task], dropout=0.3)


# The largest in-plane rotation augment draws unless told (--roll), in degrees.
ROLL_DEG = 12.0


def augment(x: torch.Tensor, g: torch.Generator, strength: float = 1.0,
            framing: dict[str, float] | None = None, roll: float = ROLL_DEG) -> torch.Tensor:
    """Random affine (flip, rotation, scale, shift), photometric jitter and cutout, batched.

    x is N x C x H x W in [0, 1], grey or Y, Cb, Cr. Pixels pulled from outside the
    image are mid grey (0.5 in every channel, neutral chroma included), as the Go
    pipeline fills crops that reach past the frame. With `framing` (robust.framing_jitter),
    the zoom and shift follow the spread of the detector's boxes instead of uniform ranges.
    The rotation is uniform within +-roll degrees (times strength): pigo finds faces rolled
    by 20 degrees and more, and the crop is not levelled.
    Brightness and contrast act on
    the grey or luma channel; colour images also get a saturation jitter (chroma
    scaled about neutral), as cameras and white balance differ.
    """
    n, dev = x.shape[0], x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(n, generator=g) * (hi - lo) + lo).to(dev)

    ang = u(-roll, roll) * math.pi / 180 * strength
    if framing is None:
        scale = torch.exp(u(-0.12, 0.12) * strength)  # >1 zooms out
        tx, ty = u(-0.08, 0.08) * strength, u(-0.08, 0.08) * strength
    else:
        scale, tx, ty = (v.to(dev) for v in robust.jitter_theta(n, g, framing, strength))
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(dev)
    cos, sin = torch.cos(ang) * scale, torch.sin(ang) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5
    # brightness / contrast jitter
    c = u(0.7, 1.3).view(n, 1, 1, 1)
    b = u(-0.15, 0.15).view(n, 1, 1, 1)
    y = x[:, :1]
    mean = y.mean(dim=(2, 3), keepdim=True)
    y = (y - mean) * c + mean + b
    if x.shape[1] > 1:
        sat = u(0.6, 1.4).view(n, 1, 1, 1)
        x = torch.cat([y, (x[:, 1:] - 0.5) * sat + 0.5], 1)
    else:
        x = y
    # cutout: one square of a quarter of the side on half the images
    h = x.shape[-1]
    s = h // 4
    cy = (torch.rand(n, generator=g) * h).long()
    cx = (torch.rand(n, generator=g) * h).long()
    keep = torch.rand(n, generator=g) < 0.5
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(h).view(1, 1, h)
    m = ((ys - cy.view(n, 1, 1)).abs() <= s // 2) & ((xs - cx.view(n, 1, 1)).abs() <= s // 2) & keep.view(n, 1, 1)
    x = torch.where(m.unsqueeze(1).to(dev), torch.full_like(x, 0.5), x)
    return x.clamp(0, 1)


def soft_age_targets(ages: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """Age-category targets spread like a Gaussian over years (label distribution learning):
    a 39-year-old puts some mass on 40-59, a 30-year-old almost none."""
    yrs = np.arange(0, 121)
    bins = np.array([data.age_bin(int(a)) for a in yrs])
    d = np.exp(-0.5 * ((yrs[None, :] - ages[:, None]) / sigma) ** 2)
    d /= d.sum(1, keepdims=True)
    t = np.zeros((len(ages), len(data.AGE_BINS)), dtype=np.float32)
    for b in range(len(data.AGE_BINS)):
        t[:, b] = d[:, bins == b].sum(1)
    return t


def class_weights(y: np.ndarray, k: int, power: float) -> torch.Tensor:
    """Mild re-weighting of rare classes: w ∝ freq^-power, normalised to mean 1 over samples."""
    freq = np.bincount(y, minlength=k).astype(np.float64)
    w = (freq / freq.sum()) ** -power
    w /= (w * freq).sum() / freq.sum()
    return torch.tensor(w, dtype=torch.float32)


def soft_ce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    loss = -(target * F.log_softmax(logits, 1)).sum(1)
    if weight is not None:
        loss = loss * (target @ weight)
    return loss.mean()


def smooth(y: torch.Tensor, k: int, eps: float) -> torch.Tensor:
    return F.one_hot(y, k).float() * (1 - eps) + eps / k


@torch.no_grad()
def predict(model: EdgeNet, x: np.ndarray, dev: str, bs: int = 512, mirror: bool = False,
            temp: float = 1.0) -> dict[str, np.ndarray]:
    """Softmax probabilities per head; with mirror, of the logits averaged over the image
    and its mirror image; temp > 1 softens them (distillation targets)."""
    model.eval()
    outs: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(x), bs):
        xb = images_tensor(x[i : i + bs]).to(dev)
        z = model(xb)
        if mirror:
            zm = model(xb.flip(3))
            z = {k: (v + zm[k]) / 2 for k, v in z.items()}
        for k, v in z.items():
            outs.setdefault(k, []).append(F.softmax(v / temp, 1).cpu().numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def plot_curves(hist: list[dict], path: Path, heads: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in hist]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(ep, [h["train_loss"] for h in hist], label="train loss")
    ax[0].set_xlabel("epoch")
    ax[0].legend()
    for hd in heads:
        ax[1].plot(ep, [h[f"val_{hd}"] for h in hist], label=f"val {hd} accuracy")
        ax[1].plot(ep, [h[f"train_{hd}"] for h in hist], "--", label=f"train {hd} accuracy (augmented)")
    ax[1].set_xlabel("epoch")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_confusion(cm: np.ndarray, labels: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rec = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 2, 1.0 * len(labels) + 1.5))
    ax.imshow(rec, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{cm[i, j]}\n{rec[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if rec[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def confusion(y: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y, p), 1)
    return cm


def teacher_targets(paths: list[Path], task: str, heads: list[str], ytr: dict[str, np.ndarray], rows: np.ndarray,
                    temp: float, dev: str) -> dict[str, torch.Tensor]:
    """Soft targets per head from trained teachers (offline distillation): each
    teacher's mirror-averaged, temperature-softened prediction on the un-augmented
    training images (those at `rows`), averaged over the teachers saved for that
    head. The labels of the images the teacher sees are checked against the
    student's, so data in another order fails loudly."""
    soft: dict[str, list[torch.Tensor]] = {}
    images: dict[tuple[int, float, str], tuple[np.ndarray, dict[str, np.ndarray]]] = {}  # teachers sharing a framing
    for p in paths:
        ck = torch.load(p, map_location="cpu")
        arch, head = Arch.from_dict(ck["arch"]), ck["head"]
        if head not in heads:
            raise SystemExit(f"--teacher {p}: saved for head {head!r}, not one of {heads}")
        key = (arch.input_size, ck.get("crop", 1.0 if task == "emotion" else data.UTK_CROP), arch.color)
        if key not in images:
            if task == "emotion":
                x, y = data.load_fer("train")
                images[key] = x[rows], {"emotion": y[rows]}
            else:
                x, a, g, _ = data.load_utk("train", *key)
                images[key] = x[rows], {"gender": g[rows], "age": np.array([data.age_bin(int(v)) for v in a[rows]])}
        x, y = images[key]
        if not np.array_equal(y[head], ytr[head]):
            raise SystemExit(f"--teacher {p}: its training images are not in the student's order")
        model = EdgeNet(arch).to(dev)
        model.load_state_dict(ck["state"])
        soft.setdefault(head, []).append(torch.from_numpy(predict(model, x, dev, mirror=True, temp=temp)[head]))
    return {h: torch.stack(v).mean(0) for h, v in soft.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(HEADS), required=True)
    ap.add_argument("--trunk", choices=sorted(TRUNKS), help="network (default: the --init checkpoint's, else base); "
                    "with --init, a trunk with the same widths and more convs per stage deepens the trained one")
    ap.add_argument("--input-size", type=int, help="square input side (UTKFace only: FER2013 is 48x48; default: the "
                    "--init checkpoint's, else 48); the trained weights of --init carry over to any size")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--wd", type=float, default=5e-2)
    ap.add_argument("--smoothing", type=float, default=0.1)
    ap.add_argument("--patience", type=int, default=12, help="stop after this many epochs without a val gain")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    ap.add_argument("--smoke", action="store_true", help="a few batches on a data subset: checks the code path only")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--time-limit", type=float, default=0, help="stop after this many minutes (0: none)")
    ap.add_argument("--stop-epoch", type=int, default=0, help="end after this epoch of the --epochs schedule, before it "
                    "anneals (0: run it whole); a later --init stage anneals from the best checkpoint")
    ap.add_argument("--init", type=Path, help="start from this checkpoint's weights (a warm restart: a second one-cycle "
                    "schedule from a trained model)")
    ap.add_argument("--color", choices=sorted(COLORS), help="UTKFace only: input colour (default: the --init "
                    "checkpoint's, else gray); a gray --init grows into ycbcr with zero chroma weights")
    ap.add_argument("--crop", type=float, help="UTKFace only: the central fraction of its 200x200 aligned crops the "
                    "model sees (default: the --init checkpoint's, else %g)" % data.UTK_CROP)
    ap.add_argument("--aug-strength", type=float, default=1.0, help="scale of the geometric augmentation")
    ap.add_argument("--roll", type=float, default=ROLL_DEG, metavar="DEG", help="largest in-plane rotation drawn, in "
                    "degrees (uniform; scaled by --aug-strength)")
    ap.add_argument("--teacher", type=Path, action="append", default=[],
                    help="distil from this trained checkpoint (repeatable): its mirror-averaged predictions on the "
                    "training images are mixed into the targets of the head it was saved for")
    ap.add_argument("--kd-alpha", type=float, default=0.5, help="weight of the teacher's predictions in the targets")
    ap.add_argument("--kd-temp", type=float, default=2.0, help="temperature that softens the teacher's predictions")
    ap.add_argument("--qat", action="store_true", help="quantization-aware fine-tuning of the --init model: BatchNorm "
                    "folded, weights and activations rounded to int8 as export.py writes them (activation ranges "
                    "recalibrated every epoch); val accuracy is then the int8 simulation's")
    ap.add_argument("--flip-average", action="store_true", help="the model will be used flip-averaged (export.py "
                    "--flip-average): judge val accuracy, early stopping and the checkpoint kept by the mean of each "
                    "image's and its mirror image's prediction")
    ap.add_argument("--qat-consistency", type=float, default=0.0, metavar="W", help="--qat: add W times the "
                    "cross-entropy of the int8 path's prediction against the float path's (same weights, same image)")
    ap.add_argument("--calib", type=int, help="--qat: training images for the activation ranges (default: "
                    "export.py's, and the same images)")
    # Training for faces as a camera sees them (robust.py, issue 15); each is off by default.
    ap.add_argument("--framing-jitter", action="store_true", help="draw the crop's zoom and shift from the spread "
                    "of the detector's boxes on the training crops (models/framing.json) instead of uniform ranges")
    ap.add_argument("--camera-aug", type=float, default=0.0, metavar="P", help="camera degradations (distance, "
                    "blur, motion, noise, low light, MJPEG, white balance, grey camera, yaw) at training "
                    "parameters, each on a share P/2 of every batch")
    ap.add_argument("--select", choices=["clean", "camera"], default="clean", help="which checkpoint is kept: the "
                    "best on clean val, or (camera) on the mean of clean val and val seen through the training "
                    "occluders and camera degradations (one fixed draw, robust.degraded_copy)")
    ap.add_argument("--occlude", type=float, default=0.0, metavar="P", help="glasses, a hand or a cap drawn over "
                    "a share P of the images (robust.occlude)")
    ap.add_argument("--erase", type=float, default=0.0, metavar="P", help="random erasing on a share P of the images")
    ap.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA", help="mixup with Beta(ALPHA, ALPHA)")
    ap.add_argument("--ferplus", action="store_true", help="emotion: targets from the FER+ votes "
                    "(ferplus_train.csv; contempt and unknown votes dropped and the rest renormalised; images "
                    "without votes or with a not-a-face majority not trained on); val stays FER2013's labels")
    ap.add_argument("--balance", type=float, default=0.0, metavar="POWER", help="draw each epoch's images with "
                    "probability ∝ frequency^-POWER of their emotion class (age category for UTKFace tasks); "
                    "replaces the loss's class weights")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        import os

        torch.set_num_threads(os.cpu_count() or 1)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if args.input_size is not None and args.input_size < 16:
        ap.error(f"--input-size {args.input_size}: at least 16 (the trunk pools three times)")
    if args.task == "emotion" and args.input_size not in (None, 48):
        ap.error("FER2013 images are 48x48: --input-size applies to agegender only")
    init = torch.load(args.init, map_location="cpu") if args.init else None
    if init is not None:
        init_arch = Arch.from_dict(init["arch"])
        if not set(HEADS[args.task]) <= set(init_arch.heads):
            ap.error(f"--init {args.init}: heads {sorted(init_arch.heads)} lack task {args.task}'s {sorted(HEADS[args.task])}")
        # a narrower task starts from the shared trunk and its own heads; the others are dropped
        init["state"] = {k: v for k, v in init["state"].items()
                         if not k.startswith("heads.") or k.split(".")[1] in HEADS[args.task]}
        init_arch.heads = {h: k for h, k in init_arch.heads.items() if h in HEADS[args.task]}
        arch = Arch.from_dict(init["arch"])
        arch.heads = dict(init_arch.heads)
        if args.trunk:
            arch.stages = TRUNKS[args.trunk]
        if args.input_size:
            arch.input_size = args.input_size
    else:
        arch = make_arch(args.task, args.trunk or "base", args.input_size or 48)
    if args.color:
        if args.task == "emotion" and args.color != "gray":
            ap.error("FER2013 is grey: --color applies to UTKFace tasks only")
        arch.color = args.color
    heads = list(arch.heads)
    if args.crop is not None and not 0 < args.crop <= 1:
        ap.error(f"--crop {args.crop}: a fraction of the aligned crop, in (0, 1]")
    if args.task == "emotion" and args.crop not in (None, 1.0):
        ap.error("--crop applies to agegender only: FER2013's crops are used whole")
    crop = 1.0 if args.task == "emotion" else args.crop or (init or {}).get("crop", data.UTK_CROP)
    if (args.qat_consistency or args.calib is not None) and not args.qat:
        ap.error("--qat-consistency and --calib apply to --qat only")
    if args.calib is not None and args.calib < 1:
        ap.error(f"--calib {args.calib}: at least one image")
    if args.qat and init is None:
        ap.error("--qat fine-tunes a trained model: give it with --init")
    if args.qat and arch != init_arch:
        ap.error("--qat fine-tunes the --init model as it is: no other --trunk or --input-size")
    if args.ferplus and args.task != "emotion":
        ap.error("--ferplus relabels FER2013: --task emotion only")
    for name in ("camera_aug", "erase", "occlude"):
        if not 0 <= getattr(args, name) <= 1:
            ap.error(f"--{name.replace('_', '-')} {getattr(args, name)}: a probability in [0, 1]")
    if args.mixup < 0 or args.balance < 0:
        ap.error("--mixup and --balance take a value >= 0")
    args.out.mkdir(parents=True, exist_ok=True)

    if args.task == "emotion":
        xtr, ytr = data.load_fer("train")
        xva, yva = data.load_fer("val")
        k = len(data.EMOTIONS)
        ttr = {"emotion": smooth(torch.from_numpy(ytr), k, args.smoothing)}
        yval = {"emotion": yva}
        weights = {"emotion": class_weights(ytr, k, 0.3)}
        labels = {"emotion": data.EMOTIONS}
    else:
        xtr, atr, gtr, _ = data.load_utk("train", arch.input_size, crop, arch.color)
        xva, ava, gva, _ = data.load_utk("val", arch.input_size, crop, arch.color)
        ka, kg = len(data.AGE_BINS), len(data.GENDERS)
        abin = np.array([data.age_bin(int(a)) for a in atr])
        ta = torch.from_numpy(soft_age_targets(atr))
        ta = ta * (1 - args.smoothing) + args.smoothing / ka
        ttr = {"age": ta, "gender": smooth(torch.from_numpy(gtr), kg, args.smoothing)}
        yval = {"age": np.array([data.age_bin(int(a)) for a in ava]), "gender": gva}
        weights = {"age": class_weights(abin, ka, 0.3), "gender": None}
        labels = {"age": data.AGE_BINS, "gender": data.GENDERS}
    ytr_hard = {h: ttr[h].argmax(1).numpy() for h in heads}
    # which images an epoch draws (None: all), and by what weight (None: each once)
    train_keep, groups = None, (ytr_hard["emotion"] if args.task == "emotion" else abin)
    if args.ferplus:
        names = robust.fer_names("train")
        if len(names) != len(xtr):
            ap.error(f"--ferplus: {len(names)} archive entries for {len(xtr)} training images")
        votes, has = robust.ferplus_votes(names, data.data_dir() / "fer2013" / "ferplus_train.csv")
        soft, train_keep = robust.ferplus_targets(votes, has)
        # ytr_hard keeps FER2013's labels: train accuracy and the teachers' order check read them
        ttr["emotion"] = torch.from_numpy(soft) * (1 - args.smoothing) + args.smoothing / len(data.EMOTIONS)
        print(f"FER+ soft targets: {int(train_keep.sum())} of {len(xtr)} images trained on; their vote majority "
              f"agrees with FER2013's label on {float((soft.argmax(1) == ytr_hard['emotion'])[train_keep].mean()):.4f}",
              flush=True)

    sel = np.arange(len(xtr))
    if args.smoke:
        sel = np.random.permutation(len(xtr))[: args.batch * 3]
        xtr = xtr[sel]
        ttr = {h: t[sel] for h, t in ttr.items()}
        ytr_hard = {h: y[sel] for h, y in ytr_hard.items()}
        groups = groups[sel]
        train_keep = None if train_keep is None else train_keep[sel]
        # val images from the whole split: a data set stored class by class starts with one class only
        vsel = np.random.permutation(len(xva))[:256]
        xva, yval = xva[vsel], {h: y[vsel] for h, y in yval.items()}
        args.epochs = 2
        print(f"smoke: {len(xtr)} training and {len(xva)} val images from {data.data_dir()}, {args.epochs} epochs: "
              "a check of the code path; its accuracies are not the model's", flush=True)
    for h, soft in teacher_targets(args.teacher, args.task, heads, ytr_hard, sel, args.kd_temp, dev).items():
        ttr[h] = ttr[h] * (1 - args.kd_alpha) + soft * args.kd_alpha
        agree = float((soft.argmax(1).numpy() == ytr_hard[h]).mean())
        print(f"distilling {h} from the teachers saved for it, alpha {args.kd_alpha}, T {args.kd_temp}: "
              f"their top-1 agrees with the training labels on {agree:.4f}", flush=True)

    framing = None
    if args.framing_jitter:
        framing = robust.framing_jitter("emotion" if args.task == "emotion" else "gender" if crop == 1.0 else "age")
        print(f"framing jitter (standard deviations): {framing}", flush=True)
    balance = robust.balance_weights(groups, args.balance) if args.balance else None
    if balance is not None:
        weights = {h: None for h in weights}  # the sampler balances already
    n_train = len(xtr) if train_keep is None else int(train_keep.sum())

    model = EdgeNet(arch)
    if init is not None:
        try:
            added = load_deepened(model, init_arch, init["state"])
        except ValueError as e:
            ap.error(f"--init {args.init} --trunk {args.trunk}: {e}")
        if init.get("imported_from"):
            calibrate_batchnorm(model, images_tensor(xtr[np.random.default_rng(args.seed).permutation(len(xtr))[:2048]]))
            print(f"imported from {init['imported_from']}: BatchNorm statistics measured on 2048 training images", flush=True)
        if added:
            # identity maps of the trained trunk's features on un-augmented training images
            init_identity(model, added, images_tensor(xtr[:2048]))
            print(f"deepened {init_arch.stages} -> {arch.stages}: {len(added)} added conv(s) start as identity maps", flush=True)
        if init_arch.color != arch.color:
            print(f"input {init_arch.color} -> {arch.color}: the added channels start with zero weights", flush=True)
    calib_x = None
    xva_mirror = mirror_images(xva) if args.flip_average else None
    # a training-side proxy of the camera: the test suite (edge eval --camera) stays a test
    xva_cam = robust.degraded_copy(xva, args.seed) if args.select == "camera" else None
    xva_cam_mirror = mirror_images(xva_cam) if xva_cam is not None and args.flip_average else None
    if args.qat:
        from export import CALIB_IMAGES, calibration_images
        from qat import QuantNet

        model = QuantNet(model)
        calib_x = calibration_images(xtr, args.calib or CALIB_IMAGES)
    model = model.to(dev)
    ema = deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)

    def val_probs(x: np.ndarray, x_mirror: np.ndarray | None) -> dict[str, np.ndarray]:
        """The EMA model's val probabilities; flip-averaged as edge computes it (the mean of
        the two probability vectors) when the mirror images are given."""
        probs = predict(ema, x, dev)
        if x_mirror is None:
            return probs
        return {h: (p + q) / 2 for (h, p), q in zip(probs.items(), predict(ema, x_mirror, dev).values())}

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
    steps_per_epoch = math.ceil(n_train / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.15, div_factor=20, final_div_factor=200
    )
    macs = {h: count_macs(arch, h) for h in heads}
    print(f"task={args.task} device={dev} threads={torch.get_num_threads()} train={len(xtr)} val={len(xva)} "
          f"crop={crop:g} macs={macs} params={sum(p.numel() for p in model.parameters())}", flush=True)

    # what the val accuracy logged, early-stopped on and stored in the checkpoint is of
    measure = ("int8 simulation" if args.qat else "float") + (", flip-averaged" if args.flip_average else "")
    hist: list[dict] = []
    best = {h: -1.0 for h in heads}
    best_epoch = {h: 0 for h in heads}
    t_start = time.time()
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()
        if args.qat:
            # ranges as the export would set them for the weights evaluated and saved (the average)
            cal = ema.calibrate(calib_x)
            model.copy_ranges(ema)
            print("qat ranges: " + ", ".join(f"{q.how}[{q.lo:.3g},{q.hi:.3g}]" for q in cal.acts)
                  + f", logits[{cal.logits.lo:.3g},{cal.logits.hi:.3g}]", flush=True)
        model.train()
        perm = robust.epoch_order(len(xtr), g, train_keep, balance)
        tot_loss, correct, seen = 0.0, {h: 0 for h in heads}, 0
        for i in range(0, len(perm), args.batch):
            idx = perm[i : i + args.batch]
            xb = augment(images_tensor(xtr[idx.numpy()]), g, args.aug_strength, framing, args.roll)
            if args.occlude:  # drawn on the face before the camera sees it, as the scene does
                xb = robust.occlude(xb, g, args.occlude)
            if args.camera_aug:
                xb = robust.degrade(xb, g, args.camera_aug)
            if args.erase:
                xb = robust.random_erase(xb, g, args.erase)
            tb = {h: ttr[h][idx] for h in heads}
            if args.mixup:
                xb, tb, _ = robust.mixup(xb, tb, g, args.mixup)
            xb = xb.to(dev)
            out = model(xb)
            loss = sum(soft_ce(out[h], tb[h].to(dev), None if weights[h] is None else weights[h].to(dev)) for h in heads)
            if args.qat_consistency:
                # pull the int8 path's prediction towards the same weights' float one, which the
                # export's agreement check compares it with
                with torch.no_grad():
                    ref = model(xb, quantize=False)
                loss = loss + args.qat_consistency * sum(soft_ce(out[h], F.softmax(ref[h], 1), None) for h in heads)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                decay = min(0.999, (1 + epoch * steps_per_epoch) / (10 + epoch * steps_per_epoch))
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
                for be, bm in zip(ema.buffers(), model.buffers()):
                    be.copy_(bm)
            tot_loss += loss.item() * len(idx)
            seen += len(idx)
            for h in heads:
                correct[h] += (out[h].argmax(1).cpu().numpy() == ytr_hard[h][idx.numpy()]).sum()
        probs = val_probs(xva, xva_mirror)
        rec = {"epoch": epoch, "train_loss": tot_loss / seen, "seconds": round(time.time() - t0, 1),
               "lr": sched.get_last_lr()[0]}
        probs_cam = None if xva_cam is None else val_probs(xva_cam, xva_cam_mirror)
        for h in heads:
            acc = float((probs[h].argmax(1) == yval[h]).mean())
            rec[f"val_{h}"] = acc
            rec[f"train_{h}"] = correct[h] / seen
            score, extra = acc, {}
            if probs_cam is not None:
                rec[f"val_{h}_degraded"] = float((probs_cam[h].argmax(1) == yval[h]).mean())
                score = (acc + rec[f"val_{h}_degraded"]) / 2  # what --select camera keeps the checkpoint by
                extra = {"val_accuracy_degraded": rec[f"val_{h}_degraded"], "selected_by": "mean of clean and degraded val"}
            if score > best[h]:
                best[h], best_epoch[h] = score, epoch
                torch.save({"arch": arch.to_dict(), "state": ema.edge_state() if args.qat else ema.state_dict(),
                            "head": h, "epoch": epoch, "val_accuracy": acc, "labels": labels[h], "macs": macs[h],
                            "crop": crop, "qat": args.qat, "val_measure": measure, **extra}, args.out / f"{h}.pt")
                cm = confusion(yval[h], probs[h].argmax(1), len(labels[h]))
                plot_confusion(cm, labels[h], f"{h}: val accuracy {acc:.4f} ({measure}, epoch {epoch})",
                               args.out / f"{h}_confusion.png")
        hist.append(rec)
        print(json.dumps(rec), flush=True)
        (args.out / f"{args.task}_history.json").write_text(json.dumps(hist, indent=1))
        plot_curves(hist, args.out / f"{args.task}_curve.png", heads)
        if all(epoch - best_epoch[h] >= args.patience for h in heads):
            print(f"early stop: no val gain for {args.patience} epochs", flush=True)
            break
        if epoch == args.stop_epoch:
            print(f"stopping after epoch {epoch} of {args.epochs} (--stop-epoch)", flush=True)
            break
        # stop before an epoch that would end past the limit, judged by the mean epoch so far
        if args.time_limit and (time.time() - t_start) / 60 * (epoch + 1) / epoch > args.time_limit:
            print("stopping: time limit", flush=True)
            break
    print(json.dumps({"best": best, "best_epoch": best_epoch}), flush=True)


if __name__ == "__main__":
    main()
