"""Tests for models/train.py's offline distillation targets (no training data needed).

    /usr/bin/python3 -m unittest discover -s models -p 'test_*.py'
"""
from __future__ import annotations

import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import data  # noqa: E402
import train  # noqa: E402
from net import Arch, EdgeNet  # noqa: E402

torch.set_num_threads(1)


class TeacherTargetsTest(unittest.TestCase):
    def setUp(self) -> None:
        rng = np.random.default_rng(0)
        self.x = rng.integers(0, 256, (40, 16, 16), dtype=np.uint8)
        self.y = rng.integers(0, 7, 40)
        self.arch = Arch(input_size=16, stages=[(4, 1), (8, 1)], heads={"emotion": 7})
        torch.manual_seed(0)
        self.model = EdgeNet(self.arch).eval()
        self.dir = tempfile.TemporaryDirectory()
        self.ckpt = Path(self.dir.name) / "teacher.pt"
        torch.save({"arch": self.arch.to_dict(), "state": self.model.state_dict(), "head": "emotion"}, self.ckpt)
        patch = mock.patch.object(data, "load_fer", return_value=(self.x, self.y))
        patch.start()
        self.addCleanup(patch.stop)
        self.addCleanup(self.dir.cleanup)

    def test_mirror_averaged_softened_predictions_of_the_selected_rows(self) -> None:
        rows = np.array([3, 0, 17, 39])
        got = train.teacher_targets([self.ckpt, self.ckpt], "emotion", ["emotion"], {"emotion": self.y[rows]},
                                    rows, 2.0, "cpu")["emotion"]
        xb = torch.from_numpy(self.x[rows]).float().div(255).unsqueeze(1)
        with torch.no_grad():
            z = (self.model(xb)["emotion"] + self.model(xb.flip(3))["emotion"]) / 2
        want = F.softmax(z / 2.0, 1)
        self.assertEqual(tuple(got.shape), (4, 7))
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(got.sum(1), torch.ones(4))
        # A higher temperature gives flatter targets.
        hot = train.teacher_targets([self.ckpt], "emotion", ["emotion"], {"emotion": self.y[rows]}, rows, 8.0, "cpu")
        self.assertLess(float(hot["emotion"].max()), float(got.max()))

    def test_images_in_another_order_fail(self) -> None:
        rows = np.arange(40)
        shuffled = {"emotion": np.roll(self.y, 1)}
        with self.assertRaisesRegex(SystemExit, "not in the student's order"):
            train.teacher_targets([self.ckpt], "emotion", ["emotion"], shuffled, rows, 1.0, "cpu")

    def test_teacher_for_another_head_fails(self) -> None:
        with self.assertRaisesRegex(SystemExit, "saved for head 'emotion'"):
            train.teacher_targets([self.ckpt], "agegender", ["age", "gender"], {}, np.arange(4), 1.0, "cpu")


if __name__ == "__main__":
    unittest.main()
