"""Quantization-aware fine-tuning: EdgeNet as export.py writes it, BatchNorm folded and every
weight and activation rounded to int8 in the forward pass (straight-through gradients).

A trained network whose float top-1 the int8 file does not keep closely enough (export.py's
99% agreement check) is fine-tuned for a few epochs as the int8 graph computes it:
per-channel symmetric conv weights, one symmetric scale for the fully connected weights,
and asymmetric activation ranges taken from export.calibrate on the current weights (the
same function, images and mode the export uses, refreshed every epoch). The result is
saved as an ordinary EdgeNet checkpoint whose BatchNorms are identities, so export.py and
every other tool read it unchanged.
"""
from __future__ import annotations

from copy import deepcopy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import export
from net import Arch, EdgeNet


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def fake_quant_act(x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor) -> torch.Tensor:
    """Asymmetric int8 rounding; the gradient passes inside the range and is 0 where it clips."""
    lo, hi = (-128 - zp) * scale, (127 - zp) * scale
    x = torch.minimum(torch.maximum(x, lo), hi)
    return _round_ste(x / scale) * scale


def fake_quant_weight(w: torch.Tensor, b: torch.Tensor, in_scale: torch.Tensor | float,
                      per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 weights at max|w|/127, per output channel or for the whole tensor, and
    the bias rounded to int32 at in_scale times the weights' scale (export.quantize_conv/_fc)."""
    a = w.detach().abs()
    m = a.flatten(1).amax(1) if per_channel else a.max()
    scale = torch.clamp(m, min=1e-12) / 127
    wq = torch.clamp(_round_ste(w / scale.view(-1, *([1] * (w.dim() - 1)))), -127, 127)
    bs = scale * in_scale
    return wq * scale.view(-1, *([1] * (w.dim() - 1))), _round_ste(b / bs) * bs


class QuantNet(nn.Module):
    """The BN-folded EdgeNet with int8 fake quantization; forward returns logits per head,
    as EdgeNet's does, and in eval mode simulates the exported int8 graph."""

    def __init__(self, model: EdgeNet) -> None:
        super().__init__()
        self.arch: Arch = model.arch
        state = model.state_dict()
        ckpt = {"arch": self.arch.to_dict(), "state": state}
        heads = list(self.arch.heads)
        folded = export.fold(ckpt, heads[0])
        self.kinds = [L.kind for L in folded.layers if L.kind != "fc"]
        self.strides = [L.stride for L in folded.layers if L.kind == "conv"]
        convs = [L for L in folded.layers if L.kind == "conv"]
        self.w = nn.ParameterList([nn.Parameter(torch.from_numpy(L.w).clone()) for L in convs])
        self.b = nn.ParameterList([nn.Parameter(torch.from_numpy(L.b).clone()) for L in convs])
        self.heads = deepcopy(model.heads)
        self.dropout = nn.Dropout(self.arch.dropout)
        n = len(convs)
        # activation quantization (scale, zero point): refreshed by calibrate(), copied with buffers
        self.register_buffer("act_scale", torch.ones(n))
        self.register_buffer("act_zp", torch.zeros(n))
        self.register_buffer("pool_q", torch.tensor([1.0, 0.0]))
        self.register_buffer("logit_q", torch.tensor([[1.0, 0.0]] * len(heads)))

    def folded(self, head: str) -> export.Folded:
        layers, ci = [], 0
        for kind in self.kinds:
            if kind == "conv":
                layers.append(export.Layer("conv", self.w[ci].detach().cpu().numpy().copy(),
                                           self.b[ci].detach().cpu().numpy().copy(), self.strides[ci]))
                ci += 1
            else:
                layers.append(export.Layer(kind))
        fc = self.heads[head]
        layers.append(export.Layer("fc", fc.weight.detach().cpu().numpy().copy(), fc.bias.detach().cpu().numpy().copy()))
        return export.Folded(self.arch, head, layers)

    @torch.no_grad()
    def calibrate(self, x: np.ndarray, mode: str = "mse") -> export.Calib:
        """Sets every activation range as export.py would on images x (N x H x W uint8)."""
        cal = None
        for i, h in enumerate(self.arch.heads):
            cal = export.calibrate(self.folded(h), x, "mean", mode)  # the trunk's ranges are the same per head
            self.logit_q[i] = torch.tensor([cal.logits.scale, cal.logits.zero_point])
        self.act_scale.copy_(torch.tensor([q.scale for q in cal.acts]))
        self.act_zp.copy_(torch.tensor([float(q.zero_point) for q in cal.acts]))
        self.pool_q.copy_(torch.tensor([cal.pool.scale, cal.pool.zero_point]))
        return cal

    @torch.no_grad()
    def copy_ranges(self, other: "QuantNet") -> None:
        for name in ("act_scale", "act_zp", "pool_q", "logit_q"):
            getattr(self, name).copy_(getattr(other, name))

    def forward(self, x: torch.Tensor, quantize: bool = True) -> dict[str, torch.Tensor]:
        """x: N x 1 x H x W grey in [0, 1] (rounded to the int8 input's steps of 1/255).
        quantize=False: the float model of the same weights (what export.py checks against)."""
        if not quantize:
            return self._float_forward(x)
        h = torch.round(x.clamp(0, 1) * 255) / 255
        in_scale: torch.Tensor | float = export.INPUT_SCALE
        ci = 0
        for kind in self.kinds:
            if kind == "conv":
                w, b = fake_quant_weight(self.w[ci], self.b[ci], in_scale, per_channel=True)
                h = F.relu(F.conv2d(h, w, b, stride=self.strides[ci], padding=1))
                h = fake_quant_act(h, self.act_scale[ci], self.act_zp[ci])
                in_scale = self.act_scale[ci]
                ci += 1
            elif kind == "maxpool":
                h = F.max_pool2d(h, 2)
            else:  # gap
                h = fake_quant_act(h.mean(dim=(2, 3)), self.pool_q[0], self.pool_q[1])
                in_scale = self.pool_q[0]
        h = self.dropout(h)
        out = {}
        for i, (name, fc) in enumerate(self.heads.items()):
            z = F.linear(h, *fake_quant_weight(fc.weight, fc.bias, in_scale, per_channel=False))
            out[name] = fake_quant_act(z, self.logit_q[i, 0], self.logit_q[i, 1])
        return out

    def _float_forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, ci = x, 0
        for kind in self.kinds:
            if kind == "conv":
                h = F.relu(F.conv2d(h, self.w[ci], self.b[ci], stride=self.strides[ci], padding=1))
                ci += 1
            elif kind == "maxpool":
                h = F.max_pool2d(h, 2)
            else:
                h = h.mean(dim=(2, 3))
        # no dropout: the reference is the whole float model, as exported
        return {name: fc(h) for name, fc in self.heads.items()}

    def edge_state(self) -> dict[str, torch.Tensor]:
        """An EdgeNet state dict for the fine-tuned (float) weights, BatchNorms set to identities
        (export.fold multiplies by weight / sqrt(running_var + eps) = 1)."""
        net = EdgeNet(self.arch)
        state = net.state_dict()
        ci = 0
        for i, m in enumerate(net.features):
            if isinstance(m, nn.MaxPool2d):
                continue
            bn = m[1]
            state[f"features.{i}.0.weight"] = self.w[ci].detach().cpu().clone()
            state[f"features.{i}.1.weight"] = torch.ones(bn.num_features)
            state[f"features.{i}.1.bias"] = self.b[ci].detach().cpu().clone()
            state[f"features.{i}.1.running_mean"] = torch.zeros(bn.num_features)
            state[f"features.{i}.1.running_var"] = torch.full((bn.num_features,), 1.0 - bn.eps)
            ci += 1
        for k, v in self.heads.state_dict().items():
            state[f"heads.{k}"] = v.detach().cpu().clone()
        return state
