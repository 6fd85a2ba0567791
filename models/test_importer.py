"""Tests for models/importer.py: a .tflite written by export.py back to a trainable checkpoint.

    /usr/bin/python3 -m unittest models/test_importer.py
"""
from __future__ import annotations

import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import export as E  # noqa: E402
import importer  # noqa: E402
from net import Arch, EdgeNet, calibrate_batchnorm, images_tensor  # noqa: E402
from test_export import SIZE, Exported  # noqa: E402

torch.set_num_threads(1)


class ImporterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        if not E.TFLITE_LIB.exists():
            raise unittest.SkipTest(f"{E.TFLITE_LIB} missing: run `make tflite-lib`")
        cls.tmp = tempfile.TemporaryDirectory()
        t = Path(cls.tmp.name)
        cls.plain = Exported(t, "plain", Arch(input_size=SIZE, stages=[(8, 1), (16, 2)], heads={"test": 3}, dropout=0.0))
        # stride-2 stem on an even size: the file has a PAD op before a VALID conv
        cls.strided = Exported(t, "strided", Arch(input_size=SIZE, stages=[(8, 1), (16, 1)], stem_stride=2,
                                                  heads={"test": 3}, dropout=0.0), seed=1, steps=500)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def test_architecture_and_metadata_come_back(self) -> None:
        for m in (self.plain, self.strided):
            ck = importer.checkpoint_from_tflite(m.path)
            got, want = Arch.from_dict(ck["arch"]), Arch.from_dict(m.ckpt["arch"])
            self.assertEqual((got.input_size, got.stages, got.stem_stride, got.heads, got.color),
                             (want.input_size, want.stages, want.stem_stride, want.heads, want.color))
            self.assertEqual(ck["labels"], m.ckpt["labels"])
            self.assertEqual(ck["crop"], 0.8)
            self.assertEqual(ck["head"], "test")

    def test_weights_are_the_dequantised_ones(self) -> None:
        ck = importer.checkpoint_from_tflite(self.plain.path)
        folded = E.fold(ck, "test")
        for got, want in zip([L for L in folded.layers if L.kind == "conv"], [L for L in self.plain.model.layers if L.kind == "conv"]):
            # per output channel, within half an int8 step of the float weights that were exported
            step = np.abs(want.w).reshape(len(want.w), -1).max(1) / 127
            err = np.abs(got.w - want.w).reshape(len(want.w), -1).max(1)
            self.assertTrue(np.all(err <= step / 2 + 1e-6), f"max error {err} vs half steps {step / 2}")
            self.assertFalse(np.array_equal(got.w, want.w))  # it is the rounded copy

    def test_predictions_agree_with_the_int8_file(self) -> None:
        for name, m in (("plain", self.plain), ("strided", self.strided)):
            folded = E.fold(importer.checkpoint_from_tflite(m.path), "test")
            logits = E.float_forward(folded, m.x)
            agree_int8 = float((logits.argmax(1) == m.q.argmax(1)).mean())
            agree_float = float((logits.argmax(1) == m.logits.argmax(1)).mean())
            self.assertGreaterEqual(agree_int8, 0.97, name)
            self.assertGreaterEqual(agree_float, 0.97, name)

    def test_calibrated_batchnorm_keeps_the_function_and_normalises_like_training(self) -> None:
        ck = importer.checkpoint_from_tflite(self.plain.path)
        net = EdgeNet(Arch.from_dict(ck["arch"]))
        net.load_state_dict(ck["state"])
        x = images_tensor(self.plain.x[:512])
        net.eval()
        before = net(x)["test"]
        # training mode with identity BatchNorms rescales every channel to unit variance
        net.train()
        net.dropout.p = 0.0
        self.assertGreater(float((net(x)["test"] - before).abs().max()), 0.1)
        net.load_state_dict(ck["state"])  # that forward pass moved the running statistics
        calibrate_batchnorm(net, x)
        net.eval()
        torch.testing.assert_close(net(x)["test"], before, rtol=1e-4, atol=1e-4)
        net.train()
        torch.testing.assert_close(net(x)["test"], before, rtol=1e-3, atol=1e-3)  # the batch is the one measured
        with self.assertRaises(ValueError):  # only once: a calibrated BatchNorm is no identity
            calibrate_batchnorm(net, x)

    def test_not_an_edge_model(self) -> None:
        bad = Path(self.tmp.name) / "bad.tflite"
        bad.write_bytes(b"\0" * 64)
        with self.assertRaises(ValueError):
            importer.checkpoint_from_tflite(bad)


if __name__ == "__main__":
    unittest.main()
