"""Tests for models/qat.py: the fake-quantized network computes what export.py's int8 graph
does, its checkpoint folds back to the same weights, and its gradients reach every weight.

    /usr/bin/python3 -m unittest discover -s models -p 'test_*.py'
"""
from __future__ import annotations

import sys
import unittest
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import export as E  # noqa: E402
from net import Arch, EdgeNet  # noqa: E402
from qat import QuantNet  # noqa: E402

torch.set_num_threads(1)

ARCHS = {
    "plain": Arch(input_size=16, stages=[(4, 1), (8, 2)], heads={"test": 3}, dropout=0.0),
    "strided": Arch(input_size=16, stages=[(4, 1), (8, 1)], stem_stride=2, heads={"test": 3}, dropout=0.0),
    "two heads": Arch(input_size=16, stages=[(4, 1), (8, 1)], heads={"age": 5, "gender": 2}, dropout=0.0),
}


def quant_net(arch: Arch, seed: int) -> tuple[dict, QuantNet, np.ndarray, np.ndarray]:
    ckpt = E.tiny_checkpoint(seed, arch)
    net = EdgeNet(arch)
    net.load_state_dict(ckpt["state"])
    q = QuantNet(net).eval()
    calib = E.smooth_images(300, arch.input_size, seed + 1)
    x = E.smooth_images(200, arch.input_size, seed + 2)
    return ckpt, q, calib, x


def calibrated_outputs(arch: Arch, seed: int,
                       quantize: bool = True) -> tuple[dict, QuantNet, np.ndarray, np.ndarray, dict]:
    """quant_net calibrated on its calibration images, and its outputs on x in eval mode."""
    ckpt, q, calib, x = quant_net(arch, seed)
    q.calibrate(calib)
    with torch.no_grad():
        out = q(torch.from_numpy(x).float().div(255).unsqueeze(1), quantize=quantize)
    return ckpt, q, calib, x, out


class QuantNetTest(unittest.TestCase):
    def test_matches_the_int8_emulation(self) -> None:
        for i, (name, arch) in enumerate(ARCHS.items()):
            with self.subTest(arch=name):
                ckpt, q, calib, x, out = calibrated_outputs(arch, i)
                for h in arch.heads:
                    folded = E.fold(ckpt, h)
                    want = E.simulate(folded, E.calibrate(folded, calib, "mean"), x)
                    got = out[h].numpy()
                    step = q.logit_q[list(arch.heads).index(h), 0].item()
                    # the same int8 arithmetic up to float rounding at a few step boundaries
                    self.assertLessEqual(np.abs(got - want).max(), 1.01 * step, h)
                    self.assertGreaterEqual((got.argmax(1) == want.argmax(1)).mean(), 0.99, h)
                    # and it is not the float model: the rounding shows
                    self.assertGreater(np.abs(got - E.float_forward(folded, x)).max(), 0.1 * step, h)

    def test_checkpoint_folds_back(self) -> None:
        for i, (name, arch) in enumerate(ARCHS.items()):
            with self.subTest(arch=name):
                ckpt, q, _, x = quant_net(arch, i)
                state = q.edge_state()
                for h in arch.heads:
                    before, after = E.fold(ckpt, h), E.fold({"arch": arch.to_dict(), "state": state}, h)
                    for a, b in zip(before.layers, after.layers):
                        self.assertEqual(a.kind, b.kind)
                        if a.w is not None:
                            np.testing.assert_allclose(b.w, a.w, rtol=1e-6, atol=1e-7)
                            np.testing.assert_allclose(b.b, a.b, rtol=1e-6, atol=1e-6)
                    np.testing.assert_allclose(E.float_forward(after, x), E.float_forward(before, x), atol=1e-4)

    def test_float_path_is_the_exported_float_model(self) -> None:
        for i, (name, arch) in enumerate(ARCHS.items()):
            with self.subTest(arch=name):
                ckpt, _, _, x, out = calibrated_outputs(arch, i, quantize=False)
                for h in arch.heads:
                    np.testing.assert_allclose(out[h].numpy(), E.float_forward(E.fold(ckpt, h), x), atol=1e-4)

    def test_gradients_reach_every_weight(self) -> None:
        arch = ARCHS["two heads"]
        _, q, calib, x = quant_net(arch, 3)
        q.calibrate(calib)
        q.train()
        out = q(torch.from_numpy(x[:32]).float().div(255).unsqueeze(1))
        sum(torch.nn.functional.cross_entropy(out[h], torch.zeros(32, dtype=torch.long)) for h in out).backward()
        for name, p in q.named_parameters():
            self.assertIsNotNone(p.grad, name)
            self.assertTrue(torch.isfinite(p.grad).all(), name)
            self.assertGreater(p.grad.abs().sum().item(), 0, name)


if __name__ == "__main__":
    unittest.main()
