"""The edge classifier network: a plain VGG-style CNN that maps 1:1 onto int8 TFLite ops.

Every layer is one the exporter (export.py) knows how to write: 3x3 conv with
BatchNorm and ReLU (folded and fused at export), 2x2 max pooling, a global
average pool, and one fully connected layer per output head.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn


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
        cin = 1
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
        """x: N x 1 x H x W grey in [0, 1]. Returns logits per head."""
        f = self.pool(self.features(x)).flatten(1)
        f = self.dropout(f)
        return {name: head(f) for name, head in self.heads.items()}


def count_macs(arch: Arch, head: str | None = None) -> int:
    """Multiply-adds of one inference through the trunk and one head (all heads if None)."""
    size, cin, macs = arch.input_size, 1, 0
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
