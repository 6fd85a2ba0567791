"""Tests for models/robust.py (training for camera faces) and its train.py flags; no data needed.

    /usr/bin/python3 -m unittest models/test_robust.py
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import data  # noqa: E402
import robust  # noqa: E402
import train  # noqa: E402

torch.set_num_threads(1)


def faces(n: int = 16, c: int = 1, size: int = 32, seed: int = 0) -> torch.Tensor:
    """A batch with fine detail: a checkerboard of 2-pixel squares, varied per image."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    board = (((yy // 2) + (xx // 2)) % 2).float()
    x = 0.25 + 0.5 * board.expand(n, c, size, size).clone()
    x += 0.1 * torch.rand(n, 1, 1, 1, generator=g)
    if c == 3:
        x[:, 1] = 0.45
        x[:, 2] = 0.6
    return x.clamp(0, 1)


def hf(x: torch.Tensor) -> float:
    """Mean squared difference of horizontal neighbours in the first channel."""
    return float(((x[:, 0, :, 1:] - x[:, 0, :, :-1]) ** 2).mean())


class FramingJitterTest(unittest.TestCase):
    def test_sigmas_come_from_the_measured_interquartile_ranges(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "framing.json"
            p.write_text(json.dumps({"measured": {
                "fer2013": {"scale": 1.0, "scale_iqr": [0.9, 1.1], "offset_x_iqr": [-0.02, 0.06], "offset_y_iqr": [0.0, 0.1]},
                "utkface": {"scale": 0.8, "scale_iqr": [0.75, 0.85]},
                "utkface_whole": {"scale": 1.0, "scale_iqr": [0.9, 1.0]}}}))
            s = robust.framing_jitter("emotion", p)
            self.assertAlmostEqual(s["log_scale"], math.log(1.1 / 0.9) / 1.349)
            self.assertAlmostEqual(s["offset_x"], 0.08 / 1.349)
            self.assertAlmostEqual(s["offset_y"], 0.1 / 1.349)
            # no offset ranges recorded: the scale's relative spread stands in
            a = robust.framing_jitter("age", p)
            self.assertEqual(a["offset_x"], a["log_scale"])

    def test_committed_framing_file_gives_positive_spreads(self) -> None:
        for task in ("emotion", "age", "gender"):
            s = robust.framing_jitter(task)
            for k, v in s.items():
                self.assertGreater(v, 0, f"{task} {k}")
                self.assertLess(v, 0.3, f"{task} {k}")

    def test_draws_follow_the_sigmas_and_change_augment(self) -> None:
        g = torch.Generator().manual_seed(1)
        sig = {"log_scale": 0.08, "offset_x": 0.03, "offset_y": 0.05}
        scale, tx, ty = robust.jitter_theta(20000, g, sig)
        self.assertAlmostEqual(float(torch.log(scale).std()), 0.08, delta=0.004)
        self.assertAlmostEqual(float(tx.std()), 0.06, delta=0.003)  # affine_grid units: 2 per side
        self.assertAlmostEqual(float(ty.std()), 0.10, delta=0.005)
        x = faces()
        a = train.augment(x, torch.Generator().manual_seed(3), 1.0)
        b = train.augment(x, torch.Generator().manual_seed(3), 1.0, sig)
        self.assertEqual(a.shape, b.shape)
        self.assertFalse(torch.equal(a, b))


class DegradeTest(unittest.TestCase):
    def one(self, d: str, c: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        x = faces(c=c)
        return x, robust.degrade(x, torch.Generator().manual_seed(seed), 2.0, [d])  # p/2 = 1: every image

    def test_blur_and_distance_remove_high_frequencies(self) -> None:
        for d in ("focus", "motion", "distance"):
            x, y = self.one(d)
            self.assertLess(hf(y), 0.6 * hf(x), d)

    def test_noise_adds_variation_within_the_range(self) -> None:
        x, y = self.one("noise")
        std = float((y - x).std()) * 255
        self.assertGreater(std, robust.TRAIN_RANGES["noise"][0] * 0.8)
        self.assertLess(std, robust.TRAIN_RANGES["noise"][1] * 1.1)

    def test_low_light_quantises_and_changes_tones(self) -> None:
        x = torch.linspace(0, 1, 32).expand(8, 1, 32, 32).clone()
        y = robust.degrade(x, torch.Generator().manual_seed(2), 2.0, ["light"])
        self.assertLess(len(torch.unique(y[0, 0, 0])), 32)  # banding from the dim signal's quantisation
        self.assertFalse(torch.allclose(x, y, atol=0.02))

    def test_jpeg_quality_matters(self) -> None:
        x = faces(c=3)
        q30, q95 = robust.jpeg(x, 30), robust.jpeg(x, 95)
        e30, e95 = float((q30 - x).abs().mean()), float((q95 - x).abs().mean())
        self.assertGreater(e30, 1.5 * e95)
        self.assertGreater(e95, 0)
        self.assertEqual(q30.shape, x.shape)

    def test_cast_and_grey_act_on_chroma(self) -> None:
        x, y = self.one("cast", c=3)
        self.assertFalse(torch.allclose(x[:, 1:], y[:, 1:]))
        x, y = self.one("grey", c=3)
        self.assertTrue(torch.all(y[:, 1:] == 0.5))
        torch.testing.assert_close(y[:, :1], x[:, :1])

    def test_yaw_squeezes_horizontally(self) -> None:
        x = torch.zeros(4, 1, 32, 32)
        x[:, :, :, 4:28] = 1  # a wide bright block
        y = robust.degrade(x, torch.Generator().manual_seed(5), 2.0, ["yaw"])
        width = lambda t: float((t[:, 0, 16] > 0.75).float().sum(1).mean())  # noqa: E731
        self.assertLess(width(y), width(x))
        self.assertEqual(float((y[:, 0, :, 16] > 0.75).float().mean()), 1.0)  # height kept

    def test_ycbcr_round_trip(self) -> None:
        x = faces(c=3)
        torch.testing.assert_close(robust.rgb_to_ycbcr(robust.ycbcr_to_rgb(x)), x, atol=1e-5, rtol=0)

    def test_deterministic_and_off_at_zero(self) -> None:
        x = faces(c=3)
        a = robust.degrade(x, torch.Generator().manual_seed(9), 0.8)
        b = robust.degrade(x, torch.Generator().manual_seed(9), 0.8)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(robust.degrade(x, torch.Generator().manual_seed(9), 0.0), x)
        with self.assertRaises(ValueError):
            robust.degrade(x, torch.Generator().manual_seed(9), 1.0, ["fog"])

    def test_training_ranges_avoid_the_test_suites_values(self) -> None:
        # camera/scene's Suite: q30 and q60, focus 1.6 and motion 9 frame px, noise 10, light 1/4 with gamma 1.3
        lo, hi = robust.TRAIN_RANGES["jpeg"]
        self.assertGreater(lo, 30)
        self.assertLess(robust.TRAIN_RANGES["noise"][1], 10)
        self.assertLess(robust.TRAIN_RANGES["motion"][1], 9)
        self.assertLess(robust.TRAIN_RANGES["focus"][1], 1.6)


class EraseMixupTest(unittest.TestCase):
    def test_erasing_covers_a_bounded_rectangle(self) -> None:
        x = torch.full((64, 1, 32, 32), 0.2)
        y = robust.random_erase(x, torch.Generator().manual_seed(0), 1.0)
        changed = (y != x).float().mean((1, 2, 3))
        self.assertTrue(torch.all(changed > 0.01))
        self.assertTrue(torch.all(changed <= 0.26))
        none = robust.random_erase(x, torch.Generator().manual_seed(0), 0.0)
        self.assertTrue(torch.equal(none, x))

    def test_mixup_blends_images_and_targets_alike(self) -> None:
        x = torch.rand(8, 1, 8, 8)
        t = {"emotion": torch.eye(7)[torch.arange(8) % 7]}
        g = torch.Generator().manual_seed(4)
        y, tm, lam = robust.mixup(x, t, g, 0.4)
        self.assertTrue(0 <= lam <= 1)
        torch.testing.assert_close(tm["emotion"].sum(1), torch.ones(8))
        g2 = torch.Generator().manual_seed(4)
        torch._standard_gamma(torch.full((2,), 0.4), generator=g2)
        perm = torch.randperm(8, generator=g2)
        torch.testing.assert_close(y, lam * x + (1 - lam) * x[perm])
        torch.testing.assert_close(tm["emotion"], lam * t["emotion"] + (1 - lam) * t["emotion"][perm])
        same, t0, l0 = robust.mixup(x, t, g, 0)
        self.assertIs(same, x)
        self.assertEqual(l0, 1.0)


class OccludeTest(unittest.TestCase):
    def test_each_occluder_covers_its_part_of_the_face(self) -> None:
        n, size = 300, 48
        x = torch.full((n, 3, size, size), 0.5)
        x[:, 0] = torch.linspace(0.3, 0.9, n).view(n, 1, 1)  # light faces of varied tone, neutral chroma
        out = robust.occlude(x, torch.Generator().manual_seed(1), 1.0)
        changed = (out - x).abs().amax(1) > 1e-3  # N x H x W
        self.assertTrue(bool(changed.flatten(1).any(1).all()), "p = 1: every image gets an occluder")
        third = size // 3
        rows = changed.float().mean(2)  # share of each row changed
        top, middle, bottom = rows[:, :third].mean(1), rows[:, third:2 * third].mean(1), rows[:, 2 * third:].mean(1)
        # three kinds of image: most change high up (cap), in the middle (glasses) or low down (hand)
        kind = torch.stack([top, middle, bottom], 1).argmax(1)
        counts = torch.bincount(kind, minlength=3)
        self.assertTrue(bool((counts > n / 6).all()), f"occluders by place (top, middle, bottom): {counts.tolist()}")
        self.assertLess(float(changed.float().mean()), 0.4, "an occluder covers part of the face, not all of it")
        self.assertTrue(bool(((out >= 0) & (out <= 1)).all()))

    def test_degraded_copy_is_a_fixed_draw_of_the_same_images(self) -> None:
        for shape in ((40, 32, 32), (40, 32, 32, 3)):
            x = (faces(40, c=1 if len(shape) == 3 else 3, size=32) * 255).to(torch.uint8)
            x = x[:, 0].numpy() if len(shape) == 3 else x.permute(0, 2, 3, 1).numpy()
            a, b = robust.degraded_copy(x, 1), robust.degraded_copy(x, 1)
            self.assertEqual((a.shape, a.dtype), (x.shape, np.uint8))
            np.testing.assert_array_equal(a, b)
            self.assertFalse(np.array_equal(a, robust.degraded_copy(x, 2)))
            changed = np.abs(a.astype(int) - x).reshape(len(x), -1).max(1) > 2
            self.assertGreater(changed.mean(), 0.8, "nearly every image is degraded")

    def test_grey_stays_grey_and_zero_is_off_and_seeded(self) -> None:
        x = faces(32, c=1, size=40)
        self.assertTrue(torch.equal(robust.occlude(x, torch.Generator().manual_seed(0), 0.0), x))
        a = robust.occlude(x, torch.Generator().manual_seed(3), 0.5)
        b = robust.occlude(x, torch.Generator().manual_seed(3), 0.5)
        self.assertEqual(a.shape, x.shape)
        self.assertTrue(torch.equal(a, b))
        hit = (a - x).abs().flatten(1).amax(1) > 1e-3
        self.assertTrue(0 < int(hit.sum()) < 32, f"p = 0.5 hit {int(hit.sum())} of 32")


class FERPlusTest(unittest.TestCase):
    CSV = ("file,fer_label,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF,csv_row,match_mad,ambiguous\n"
           "angry/a.jpg,angry,1,0,0,0,6,0,0,2,1,0,1,0.5,0\n"
           "happy/b.jpg,happy,0,2,0,0,0,0,0,0,0,8,2,0.5,0\n"
           "sad/c.jpg,sad,0,0,0,0,0,0,0,7,3,0,3,0.5,0\n"
           "fear/d.jpg,fear,,,,,,,,,,,-1,,0\n"
           "happy/e.jpg,happy,0,10,0,0,0,0,0,0,0,0,5,0.5,0\n")

    def test_votes_become_renormalised_soft_targets(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "ferplus_train.csv"
            p.write_text(self.CSV)
            names = ["angry/a.jpg", "happy/b.jpg", "sad/c.jpg", "fear/d.jpg", "happy/e.jpg"]
            votes, has = robust.ferplus_votes(names, p)
            self.assertEqual(has.tolist(), [True, True, True, False, True])
            t, keep = robust.ferplus_targets(votes, has)
            # a: contempt and unknown dropped: 6 anger + 1 neutral over 7
            self.assertAlmostEqual(float(t[0, data.EMOTIONS.index("angry")]), 6 / 7, places=6)
            self.assertAlmostEqual(float(t[0, data.EMOTIONS.index("neutral")]), 1 / 7, places=6)
            self.assertAlmostEqual(float(t[4, data.EMOTIONS.index("happy")]), 1.0)
            np.testing.assert_allclose(t[keep].sum(1), 1, rtol=1e-6)
            # b: not-a-face majority; c: only contempt and unknown; d: no votes
            self.assertEqual(keep.tolist(), [True, False, False, False, True])
            with self.assertRaises(ValueError):
                robust.ferplus_votes(["neutral/zzz.jpg"], p)


class SamplingTest(unittest.TestCase):
    def test_balanced_draws_equalise_groups(self) -> None:
        groups = np.array([0] * 900 + [1] * 90 + [2] * 10)
        w = robust.balance_weights(groups, 1.0)
        order = robust.epoch_order(len(groups), torch.Generator().manual_seed(0), None, w)
        counts = np.bincount(groups[order.numpy()], minlength=3)
        self.assertEqual(len(order), 1000)
        for c in counts:
            self.assertAlmostEqual(c / 1000, 1 / 3, delta=0.06)
        # power 0: as the data set is
        np.testing.assert_allclose(robust.balance_weights(groups, 0.0), np.full(1000, 1e-3))

    def test_plain_order_is_the_old_permutation_and_keep_excludes(self) -> None:
        a = robust.epoch_order(50, torch.Generator().manual_seed(3))
        b = torch.randperm(50, generator=torch.Generator().manual_seed(3))
        self.assertTrue(torch.equal(a, b))
        keep = np.arange(50) % 5 != 0
        k = robust.epoch_order(50, torch.Generator().manual_seed(3), keep)
        self.assertEqual(sorted(k.tolist()), [i for i in range(50) if i % 5])
        kw = robust.epoch_order(50, torch.Generator().manual_seed(3), keep, np.ones(50))
        self.assertTrue(all(i % 5 for i in kw.tolist()))


class TrainFlagsTest(unittest.TestCase):
    """train.py runs one short epoch with every robustness flag on, on tiny stand-in data."""

    def test_emotion_with_every_flag(self) -> None:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (96, 48, 48), dtype=np.uint8)
        y = np.arange(96) % 7
        names = [f"{data.EMOTIONS[c]}/img_{i}.jpg" for i, c in enumerate(y)]
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            (d / "fer2013").mkdir()
            rows = ["file,fer_label,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF,csv_row,match_mad,ambiguous"]
            for i, n in enumerate(names):
                v = [0] * 10
                v[i % 7] = 6
                v[(i + 1) % 10] += 4
                rows.append(f"{n},{n.split('/')[0]}," + ",".join(map(str, v)) + f",{i},0.5,0")
            (d / "fer2013" / "ferplus_train.csv").write_text("\n".join(rows) + "\n")
            out = d / "out"
            argv = ["train.py", "--task", "emotion", "--trunk", "small", "--smoke", "--batch", "32", "--threads", "1",
                    "--framing-jitter", "--camera-aug", "0.8", "--occlude", "0.5", "--select", "camera", "--erase", "0.5", "--mixup", "0.4", "--ferplus",
                    "--balance", "0.5", "--out", str(out)]
            with mock.patch.object(data, "load_fer", side_effect=lambda split: (x, y) if split == "train" else (x[:40], y[:40])), \
                    mock.patch.object(data, "data_dir", return_value=d), \
                    mock.patch.object(robust, "fer_names", return_value=names), \
                    mock.patch.object(sys, "argv", argv):
                train.main()
            hist = json.loads((out / "emotion_history.json").read_text())
            self.assertEqual(len(hist), 2)
            self.assertTrue(all(math.isfinite(h["train_loss"]) for h in hist))
            self.assertTrue((out / "emotion.pt").exists())

    def test_flags_are_checked(self) -> None:
        for extra in (["--task", "agegender", "--ferplus"], ["--task", "emotion", "--erase", "1.5"],
                      ["--task", "emotion", "--occlude", "-0.1"],
                      ["--task", "emotion", "--mixup", "-1"]):
            with mock.patch.object(sys, "argv", ["train.py", *extra]), self.assertRaises(SystemExit), \
                    contextlib.redirect_stderr(io.StringIO()):
                train.main()


if __name__ == "__main__":
    unittest.main()
