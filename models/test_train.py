"""Tests for models/train.py and data.py that need no training data.

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
import net  # noqa: E402
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



class DeepenTest(unittest.TestCase):
    """A trained network grown by added convs (train.py --init with a deeper --trunk)
    must start computing what it computed before."""

    def setUp(self) -> None:
        torch.manual_seed(0)
        self.old = Arch(input_size=16, stages=[(4, 1), (8, 1)], heads={"emotion": 7})
        self.trained = EdgeNet(self.old)
        # trained-looking BatchNorms: running statistics and affine parameters away from their defaults
        self.trained.train()
        with torch.no_grad():
            for _ in range(20):
                self.trained(torch.rand(32, 1, 16, 16))
            for m in self.trained.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
        self.x = torch.rand(64, 1, 16, 16)

    def grown(self, stages: list[tuple[int, int]]) -> tuple[EdgeNet, list[torch.nn.Module]]:
        new = Arch(input_size=16, stages=stages, heads={"emotion": 7})
        model = EdgeNet(new)
        added = net.load_deepened(model, self.old, self.trained.state_dict())
        net.init_identity(model, added, self.x)
        return model, added

    def test_identity_in_eval_and_train_mode(self) -> None:
        model, added = self.grown([(4, 2), (8, 3)])
        self.assertEqual(len(added), 3)
        model.eval()
        self.trained.eval()
        with torch.no_grad():
            torch.testing.assert_close(model(self.x)["emotion"], self.trained(self.x)["emotion"], atol=1e-5, rtol=1e-5)
            # training mode, on the batch the statistics came from: the added BatchNorms undo their own normalisation
            model.train()
            self.trained.train()
            model.dropout.p = self.trained.dropout.p = 0.0
            torch.testing.assert_close(model(self.x)["emotion"], self.trained(self.x)["emotion"], atol=1e-4, rtol=1e-4)

    def test_running_statistics_of_the_trained_layers_are_kept(self) -> None:
        model, _ = self.grown([(4, 1), (8, 2)])
        old = self.trained.state_dict()
        self.assertTrue(torch.equal(model.state_dict()["features.0.1.running_mean"], old["features.0.1.running_mean"]))
        self.assertTrue(torch.equal(model.state_dict()["features.2.1.running_var"], old["features.2.1.running_var"]))

    def test_rejects_other_widths_or_fewer_convs(self) -> None:
        for stages in ([(4, 1), (16, 1)], [(4, 1)], [(4, 1), (8, 0)]):
            with self.subTest(stages=stages), self.assertRaises(ValueError):
                net.load_deepened(EdgeNet(Arch(input_size=16, stages=stages, heads={"emotion": 7})), self.old,
                                  self.trained.state_dict())



class ColorTest(unittest.TestCase):
    """Y, Cb, Cr input: a grey network grown into colour starts as the grey model, and the
    helpers keep a colour pixel's channels together."""

    def setUp(self) -> None:
        torch.manual_seed(0)
        self.grey = Arch(input_size=16, stages=[(4, 1), (8, 1)], heads={"gender": 2})
        self.trained = EdgeNet(self.grey).eval()
        rng = np.random.default_rng(1)
        self.x = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)

    def test_grown_from_grey_ignores_chroma_at_first(self) -> None:
        model = EdgeNet(Arch(**{**self.grey.to_dict(), "color": "ycbcr"}))
        self.assertEqual(net.load_deepened(model, self.grey, self.trained.state_dict()), [])
        model.eval()
        self.assertEqual(model.features[0][0].weight.shape[1], 3)
        with torch.no_grad():
            got = model(net.images_tensor(self.x))["gender"]
            want = self.trained(net.images_tensor(self.x[..., 0]))["gender"]
            torch.testing.assert_close(got, want)
            # the chroma weights start at zero, not the network: they train
            grey_chroma = self.x.copy()
            grey_chroma[..., 1:] = 128
            torch.testing.assert_close(model(net.images_tensor(grey_chroma))["gender"], got)
        with self.assertRaises(ValueError):
            net.load_deepened(EdgeNet(self.grey), model.arch, model.state_dict())

    def test_tensor_and_mirror_layouts(self) -> None:
        t = net.images_tensor(self.x)
        self.assertEqual(tuple(t.shape), (6, 3, 16, 16))
        self.assertAlmostEqual(float(t[2, 1, 3, 4]), self.x[2, 3, 4, 1] / 255, places=6)
        self.assertEqual(tuple(net.images_tensor(self.x[..., 0]).shape), (6, 1, 16, 16))
        m = net.mirror_images(self.x)
        np.testing.assert_array_equal(m[:, :, 0], self.x[:, :, 15])  # whole pixels move, channels in order
        np.testing.assert_array_equal(net.mirror_images(self.x[..., 0]), self.x[:, :, ::-1, 0])

    def test_augment_keeps_neutral_chroma_neutral(self) -> None:
        x = net.images_tensor(self.x)
        x[:, 1:] = 128 / 255
        out = train.augment(x, torch.Generator().manual_seed(0))
        self.assertEqual(tuple(out.shape), tuple(x.shape))
        # geometry, cutout and saturation move no neutral chroma off neutral; luma does change
        torch.testing.assert_close(out[:, 1:], torch.full_like(out[:, 1:], 128 / 255), atol=2e-3, rtol=0)
        self.assertGreater(float((out[:, 0] - x[:, 0]).abs().mean()), 0.01)

    def test_augment_roll_bounds_the_rotation(self) -> None:
        # a vertical bar through the centre; no zoom or shift, so only the rotation can tilt it
        x = torch.zeros(200, 1, 32, 32)
        x[:, :, :, 15:17] = 1.0
        still = {"log_scale": 0.0, "offset_x": 0.0, "offset_y": 0.0}

        def tilted(roll: float) -> float:
            out = train.augment(x, torch.Generator().manual_seed(5), 1.0, still, roll)
            top, bottom = out[:, 0, 3].argmax(1), out[:, 0, 28].argmax(1)
            return float(((top - bottom).abs() >= 8).float().mean())

        # 8 px over the 25 rows between is a turn of 17.7 degrees or more
        self.assertLess(tilted(0.0), 0.05)
        self.assertLess(tilted(12.0), 0.05)
        self.assertGreater(tilted(30.0), 0.3)  # 41% of +-30 degrees


if __name__ == "__main__":
    unittest.main()


class AreaResizeTest(unittest.TestCase):
    """data.area_resize must compute what pipeline.Crop and ResizeGray compute
    when shrinking (the cases of pipeline/crop_test.go's TestResizeGray), so a
    model trains on the pixels edge feeds it."""

    @staticmethod
    def ramp(w: int, h: int) -> np.ndarray:
        return (np.arange(w)[None, :] + 10 * np.arange(h)[:, None]).astype(np.uint8)

    def test_cases_shared_with_go(self) -> None:
        cases = [
            # [0,1.5): (0 + 0.5*90)/1.5 = 30; [1.5,3): (0.5*90 + 180)/1.5 = 150, on each row.
            ("fractional area average", np.tile(np.uint8([0, 90, 180]), (3, 1)), 0, 0, 3, 2,
             np.uint8([[30, 150], [30, 150]])),
            ("to a single pixel, half rounds up", self.ramp(4, 4), 0, 0, 4, 1, np.uint8([[17]])),  # mean 16.5
            ("identity", self.ramp(3, 3), 0, 0, 3, 3, self.ramp(3, 3)),
            # rows [1,3.5) of columns [1,3.5): weights 1, 1, 0.5 on each axis.
            ("fractional origin", self.ramp(4, 4), 1, 1, 2.5, 1,
             np.uint8([[round((11 + 12 + 0.5 * 13 + 21 + 22 + 0.5 * 23 + 0.5 * (31 + 32 + 0.5 * 33)) / 6.25)]])),
        ]
        for name, img, x0, y0, side, size, want in cases:
            with self.subTest(name):
                np.testing.assert_array_equal(data.area_resize(img, x0, y0, side, size), want)

    def test_channels_are_resized_alike(self) -> None:
        img = np.stack([self.ramp(4, 4), 255 - self.ramp(4, 4), np.full((4, 4), 128, np.uint8)], axis=-1)
        got = data.area_resize(img, 0, 0, 4, 2)
        self.assertEqual(got.shape, (2, 2, 3))
        for c in range(3):
            np.testing.assert_array_equal(got[..., c], data.area_resize(img[..., c], 0, 0, 4, 2))

    def test_rejects_enlarging_and_squares_outside(self) -> None:
        img = self.ramp(4, 4)
        for x0, y0, side, size in [(0, 0, 2, 3), (1, 0, 4, 2), (0, -0.5, 3, 2)]:
            with self.subTest(x0=x0, y0=y0, side=side, size=size), self.assertRaises(ValueError):
                data.area_resize(img, x0, y0, side, size)


class FixtureDataTest(unittest.TestCase):
    """fixture.py writes archives that data.py reads as it reads ../shared/data, and the
    caches of two data folders never mix."""

    def setUp(self) -> None:
        import fixture

        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.root = Path(self.dir.name)
        self.counts = fixture.write(self.root / "a", scale=0.1)
        env = mock.patch.dict("os.environ", {"EDGE_DATA": str(self.root / "a"), "EDGE_CACHE": str(self.root / "cache")})
        env.start()
        self.addCleanup(env.stop)

    def test_layouts_load(self) -> None:
        x, y = data.load_fer("train")
        self.assertEqual(x.shape, (self.counts["fer2013/train"], 48, 48))
        self.assertEqual(set(y.tolist()), set(range(len(data.EMOTIONS))))
        # classes interleaved: the first images are not all one class
        self.assertEqual(len(set(y[:7].tolist())), 7)
        x, age, gender, race = data.load_utk("val", 64, 0.8, "ycbcr")
        self.assertEqual(x.shape, (self.counts["utkface/val"], 64, 64, 3))
        self.assertEqual({data.age_bin(int(a)) for a in age}, set(range(len(data.AGE_BINS))))
        self.assertEqual(set(gender.tolist()), {0, 1})
        self.assertEqual(set(race.tolist()), set(range(len(data.RACES))))

    def test_cache_is_per_archive(self) -> None:
        import fixture

        xa, _ = data.load_fer("val")
        self.assertEqual(len(list((self.root / "cache").glob("fer_val-*.npz"))), 1)
        np.testing.assert_array_equal(data.load_fer("val")[0], xa)  # from the cache
        fixture.write(self.root / "b", seed=1, scale=0.1)
        with mock.patch.dict("os.environ", {"EDGE_DATA": str(self.root / "b")}):
            xb, _ = data.load_fer("val")
        self.assertEqual(len(list((self.root / "cache").glob("fer_val-*.npz"))), 2)
        self.assertFalse(np.array_equal(xa, xb))

    def test_missing_archive_names_the_fix(self) -> None:
        with mock.patch.dict("os.environ", {"EDGE_DATA": str(self.root / "none")}):
            with self.assertRaises(SystemExit) as cm:
                data.load_utk("train", 64)
        self.assertIn("EDGE_DATA", str(cm.exception))
        self.assertIn("../shared/data", str(cm.exception))
