"""The edge classifier network: a plain VGG-style CNN that maps 1:1 onto int8 TFLite ops.

Every layer is one the exporter (export.py) knows how to write: 3x3 conv with
BatchNorm and ReLU (folded and fused at export), 2x2 max pooling, a global
average pool, and one fully connected layer per output head.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

COLORS = {"gray": 1, "ycbcr": 3}  # input colour -> channels


@dataclass
class Arch:
    """Architecture hyper-parameters, stored in every checkpoint."""

    input_size: int = 48
    # stages: (channels, convs). A 2x2 max pool follows every stage but the last.
    stages: list[tuple[int, int]] = field(default_factory=lambda: [(32, 1), (64, 2), (128, 2), (192, 2)])
    stem_stride: int = 1
    # heads: name -> number of classes. One shared trunk, one linear layer per head.
    heads: dict[str, int] = field(default_factory=lambda: {"emotion": 7})
    dropout: float = 0.3
    # "gray" (1 channel) or "ycbcr" (3: Y, Cb, Cr, JFIF full range as Go's image.YCbCr, so the
    # pipeline feeds the luma plane it already has and the camera's own chroma planes)
    color: str = "gray"

    @property
    def channels(self) -> int:
        return COLORS[self.color]

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "Arch":
        d = dict(d)
        d["stages"] = [tuple(s) for s in d["stages"]]
        return Arch(**d)


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class EdgeNet(nn.Module):
    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.arch = arch
        layers: list[nn.Module] = []
        cin = arch.channels
        for si, (ch, n) in enumerate(arch.stages):
            for ci in range(n):
                stride = arch.stem_stride if (si == 0 and ci == 0) else 1
                layers.append(ConvBNReLU(cin, ch, stride))
                cin = ch
            if si < len(arch.stages) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(arch.dropout)
        self.heads = nn.ModuleDict({name: nn.Linear(cin, k) for name, k in arch.heads.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: N x C x H x W in [0, 1] (images_tensor). Returns logits per head."""
        f = self.pool(self.features(x)).flatten(1)
        f = self.dropout(f)
        return {name: head(f) for name, head in self.heads.items()}


def count_macs(arch: Arch, head: str | None = None) -> int:
    """Multiply-adds of one inference through the trunk and one head (all heads if None)."""
    size, cin, macs = arch.input_size, arch.channels, 0
    for si, (ch, n) in enumerate(arch.stages):
        for ci in range(n):
            stride = arch.stem_stride if (si == 0 and ci == 0) else 1
            size = (size + stride - 1) // stride
            macs += size * size * 9 * cin * ch
            cin = ch
        if si < len(arch.stages) - 1:
            size //= 2
    heads = arch.heads if head is None else {head: arch.heads[head]}
    macs += sum(cin * k for k in heads.values())
    return macs


def count_params(arch: Arch, head: str | None = None) -> int:
    m = EdgeNet(arch)
    n = sum(p.numel() for name, p in m.named_parameters() if not name.startswith("heads."))
    heads = arch.heads if head is None else {head: arch.heads[head]}
    n += sum(m.heads[h].weight.numel() + m.heads[h].bias.numel() for h in heads)
    return n


def conv_layers(arch: Arch) -> list[list[int]]:
    """Indices into EdgeNet.features of each stage's ConvBNReLU blocks."""
    out, i = [], 0
    for si, (_, n) in enumerate(arch.stages):
        out.append(list(range(i, i + n)))
        i += n + (1 if si < len(arch.stages) - 1 else 0)
    return out


def load_deepened(model: EdgeNet, old: Arch, state: dict[str, torch.Tensor]) -> list[nn.Module]:
    """Loads a trained network into `model`, whose trunk has the same stage widths
    and at least as many convs per stage (Net2Net deepening). Each stage's first
    convs take the trained weights; the added ones, which follow them, are
    returned for the caller to start as identity maps (init_identity). A grey
    network grows into a "ycbcr" one with zero weights on Cb and Cr: its luma
    channel is the grey image, so it starts as exactly the grey model."""
    new = model.arch
    if old.color != new.color:
        if (old.color, new.color) != ("gray", "ycbcr"):
            raise ValueError(f"cannot turn a {old.color} network into a {new.color} one")
        w = state["features.0.0.weight"]
        state = dict(state)
        state["features.0.0.weight"] = torch.cat([w, torch.zeros_like(w).repeat(1, 2, 1, 1)], 1)
    if [c for c, _ in old.stages] != [c for c, _ in new.stages] or any(
        n_new < n_old for (_, n_old), (_, n_new) in zip(old.stages, new.stages)
    ):
        raise ValueError(f"cannot deepen stages {old.stages} into {new.stages}: widths must match, depths not shrink")
    pairs = list(zip(conv_layers(old), conv_layers(new)))
    remap = {f"features.{o}.": f"features.{n}." for old_idx, new_idx in pairs for o, n in zip(old_idx, new_idx)}
    mapped = {}
    for k, v in state.items():
        prefix = next((p for p in remap if k.startswith(p)), None)
        mapped[remap[prefix] + k[len(prefix):] if prefix else k] = v
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    if unexpected:
        raise ValueError(f"checkpoint keys not in the deepened network: {unexpected}")
    added_idx = [n for old_idx, new_idx in pairs for n in new_idx[len(old_idx):]]
    stray = [k for k in missing if not any(k.startswith(f"features.{n}.") for n in added_idx)]
    if stray:
        raise ValueError(f"weights missing from the checkpoint: {stray}")
    return [model.features[n] for n in added_idx]


@torch.no_grad()
def init_identity(model: EdgeNet, blocks: list[nn.Module], x: torch.Tensor) -> None:
    """Starts added ConvBNReLU blocks as identity maps of their (non-negative,
    post-ReLU) input: the conv copies channel i to channel i and the BatchNorm,
    given the input's per-channel statistics on `x` (N x C x H x W images), undoes
    its own normalisation, in eval mode exactly and in training mode up to the
    batch's deviation from them. The statistics are those of training mode (the
    trunk's BatchNorms normalising by batch), where training resumes; the trunk's
    running statistics are left as they were."""
    was_training = model.training
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k or "num_batches" in k}
    model.train()
    seen: dict[nn.Module, torch.Tensor] = {}

    def record(conv: nn.Module, inp: tuple[torch.Tensor], _out: torch.Tensor) -> None:
        seen[conv] = inp[0]

    # one block at a time, in order, so each sees the output of the ones already set before it
    set_stats = []
    for b in blocks:
        conv, bn = b[0], b[1]
        conv.weight.zero_()
        for i in range(conv.out_channels):
            conv.weight[i, i, 1, 1] = 1.0
        hook = conv.register_forward_hook(record)
        model(x)
        hook.remove()
        mean, var = seen[conv].mean((0, 2, 3)), seen[conv].var((0, 2, 3), unbiased=False)
        bn.weight.copy_((var + bn.eps).sqrt())
        bn.bias.copy_(mean)
        set_stats.append((bn, mean, var))
    model.load_state_dict(buffers, strict=False)
    for bn, mean, var in set_stats:
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
    model.train(was_training)


@torch.no_grad()
def calibrate_batchnorm(model: EdgeNet, x: torch.Tensor) -> None:
    """Gives identity BatchNorms (those of a models/importer.py checkpoint, whose int8 file
    kept no statistics) the statistics of their input on `x` (N x C x H x W images) without
    changing what the network computes in eval mode: running mean and variance become the
    input's, weight its standard deviation and bias the old bias plus its mean. Training
    mode then normalises each batch by about what the trained network saw, instead of
    rescaling every channel to unit variance (which cost a fine-tune of the shipped age
    model 3.5 points of val accuracy in its first epoch)."""
    was_training = model.training
    model.eval()
    seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(bn: nn.Module, inp: tuple[torch.Tensor], _out: torch.Tensor) -> None:
        seen[bn] = (inp[0].mean((0, 2, 3)), inp[0].var((0, 2, 3), unbiased=False))

    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    hooks = [bn.register_forward_hook(record) for bn in bns]
    model(x)  # eval mode: every identity BatchNorm passes its input on unchanged
    for h in hooks:
        h.remove()
    for bn in bns:
        mean, var = seen[bn]
        # eval output (z - mean) / sqrt(var + eps) * w + b with w = sqrt(var + eps), b = old b + mean
        # is z + old b: the same as before
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        shift = bn.bias - bn.running_mean * scale
        if not (torch.allclose(scale, torch.ones_like(scale), atol=1e-4) and torch.allclose(bn.running_mean, torch.zeros_like(mean))):
            raise ValueError("calibrate_batchnorm: a BatchNorm is not an identity (not an imported checkpoint)")
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_((var + bn.eps).sqrt())
        bn.bias.copy_(shift + mean)
    model.train(was_training)


def images_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 images as the dataset loaders return them (N x H x W grey, N x H x W x 3
    colour) -> float N x C x H x W in [0, 1], the networks' input."""
    t = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255)
    return t.unsqueeze(1) if t.dim() == 3 else t.permute(0, 3, 1, 2).contiguous()


def mirror_images(x: np.ndarray) -> np.ndarray:
    """The horizontal mirror images of N x H x W or N x H x W x C images (pixels move,
    a colour pixel's channels stay in order), as pipeline.Mirror computes them."""
    return np.ascontiguousarray(x[:, :, ::-1])
