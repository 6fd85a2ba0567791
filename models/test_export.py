"""Tests for models/export.py through the real TFLite 2.9 C library (no training data needed).

    /usr/bin/python3 -m unittest discover -s models -p 'test_*.py'

A tiny EdgeNet checkpoint is made on the fly: random weights, then a few hundred Adam steps on
synthetic 16x16 images (3 classes: bright blob, dark blob, stripes), so that it is decisive
like a trained model. It is exported, run through the runtime (built-in kernels and XNNPACK)
and checked: top-1 agreement with the float model >= 99%, probabilities summing to ~1, the
quantization rules of ../shared/notes/tflite-2.9-facts.md, the metadata JSON round trip, the
pooling ops' requantization, and the committed Go fixture tflite/testdata/tiny*. A last test
exports a `models/train.py --smoke` checkpoint, trained on the synthetic fixture (fixture.py),
end to end through the CLI.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import export as E  # noqa: E402
from net import Arch, EdgeNet, count_macs  # noqa: E402
from tflite import Conv2DOptions, Pool2DOptions, ReducerOptions, SoftmaxOptions  # noqa: E402
from tflite.BuiltinOperator import BuiltinOperator as Op  # noqa: E402
from tflite.BuiltinOptions import BuiltinOptions  # noqa: E402
from tflite.TensorType import TensorType  # noqa: E402

torch.set_num_threads(1)
LABELS = ["bright", "dark", "stripes"]
SIZE = 16
# The 2.9 runtime's upper bounds on op versions (facts file) plus the ones we use besides.
MAX_VERSION = {Op.CONV_2D: 5, Op.MAX_POOL_2D: 3, Op.RESHAPE: 1, Op.FULLY_CONNECTED: 9, Op.SOFTMAX: 3,
               Op.MEAN: 3, Op.AVERAGE_POOL_2D: 3, Op.PAD: 4}


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n random 16x16 grey images of 3 classes: a bright blob on a darker background, a dark
    blob on a brighter one, stripes at a random angle; random contrast, brightness and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    x = np.empty((n, SIZE, SIZE), dtype=np.uint8)
    y = rng.integers(0, 3, n)
    for i in range(n):
        if y[i] < 2:
            cx, cy, r = rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75), rng.uniform(0.12, 0.3)
            img = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
            img = img if y[i] == 0 else 1 - img
        else:
            a, f = rng.uniform(0, math.pi), rng.uniform(1.5, 3.5)
            img = 0.5 + 0.5 * np.sin(2 * math.pi * f * (xx * math.cos(a) + yy * math.sin(a)) + rng.uniform(0, 6.3))
        c = rng.uniform(0.4, 0.9)
        img = img * c + rng.uniform(0, 1 - c) + rng.normal(0, 0.03, img.shape)
        x[i] = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    return x, y


def synthetic_checkpoint(arch: Arch, seed: int = 0, steps: int = 250) -> dict:
    """A checkpoint in train.py's format, from a random EdgeNet trained briefly on synthetic()."""
    torch.manual_seed(seed)
    net = EdgeNet(arch)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    xs, ys = synthetic(steps * 32, seed + 1000)
    head = next(iter(arch.heads))
    net.train()
    for s in range(steps):
        xb = torch.from_numpy(xs[s * 32 : (s + 1) * 32]).float().div(255).unsqueeze(1)
        loss = F.cross_entropy(net(xb)[head], torch.from_numpy(ys[s * 32 : (s + 1) * 32]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return {"arch": arch.to_dict(), "state": net.state_dict(), "head": head, "epoch": 1, "val_accuracy": None,
            "labels": LABELS, "macs": count_macs(arch, head)}


class Exported:
    """One checkpoint exported to a temporary .tflite, with its float model and runtime outputs."""

    def __init__(self, tmp: Path, name: str, arch: Arch, pool: str = "mean", seed: int = 0, steps: int = 250) -> None:
        self.ckpt = synthetic_checkpoint(arch, seed, steps)
        ckpt_path = tmp / f"{name}.pt"
        torch.save(self.ckpt, ckpt_path)  # round trip through a file, as export.py's CLI does
        self.model = E.fold(torch.load(ckpt_path), "test")
        self.path = tmp / f"{name}.tflite"
        self.training = {"data": "synthetic", "epoch": 1, "val_accuracy_float": None}
        self.framing = {"scale": 1.25, "offset_x": 0.0, "offset_y": 0.05}
        self.graph, self.cal, self.blob = E.export_model(
            self.model, synthetic(600, seed + 1)[0], self.path, "test", self.framing, 0.8, self.training, pool)
        self.x, self.y = synthetic(1500, seed + 2)
        self.smooth = E.smooth_images(500, SIZE, seed + 3)
        self.logits = E.float_forward(self.model, self.x)
        self.q = E.run_tflite(self.path, self.x)
        self.qx = E.run_tflite(self.path, self.x, xnnpack=True)
        self.info = E.read_model(self.path)


class ExportTest(unittest.TestCase):
    tmp: tempfile.TemporaryDirectory
    m: Exported
    strided: Exported
    avg: Exported

    @classmethod
    def setUpClass(cls) -> None:
        if not E.TFLITE_LIB.exists():
            raise unittest.SkipTest(f"{E.TFLITE_LIB} missing: run `make tflite-lib`")
        cls.tmp = tempfile.TemporaryDirectory()
        t = Path(cls.tmp.name)
        cls.m = Exported(t, "plain", Arch(input_size=SIZE, stages=[(8, 1), (16, 2)], heads={"test": 3}, dropout=0.0))
        # stride-2 stem on an even size: torch's padding differs from SAME, so a PAD op is written
        cls.strided = Exported(t, "strided", Arch(input_size=SIZE, stages=[(8, 1), (16, 1)], stem_stride=2,
                                                  heads={"test": 3}, dropout=0.0), seed=1, steps=500)
        cls.avg = Exported(t, "avg", Arch(input_size=SIZE, stages=[(8, 1), (16, 1)], heads={"test": 3}, dropout=0.0),
                           pool="avg", seed=2)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def models(self):
        return [("plain", self.m), ("strided", self.strided), ("avg", self.avg)]

    def test_agreement_with_float(self) -> None:
        for name, m in self.models():
            with self.subTest(model=name):
                acc = float((m.logits.argmax(1) == m.y).mean())
                self.assertGreater(acc, 0.9, "the synthetic checkpoint did not train")
                for kernels, q in (("built-in", m.q), ("xnnpack", m.qx)):
                    agree = E.compare(m.logits, q)["agreement"]
                    self.assertGreaterEqual(agree, 0.99, f"{name} {kernels}: int8/float top-1 agreement {agree}")
                # random smooth images (out of distribution): report, looser bound
                ls = E.float_forward(m.model, m.smooth)
                agree = E.compare(ls, E.run_tflite(m.path, m.smooth))["agreement"]
                self.assertGreaterEqual(agree, 0.97, f"{name}: agreement on random smooth images {agree}")

    def test_probabilities(self) -> None:
        for name, m in self.models():
            with self.subTest(model=name):
                p = (m.q.astype(np.float64) + 128) / 256
                sums = p.sum(1)
                self.assertLess(np.abs(sums - 1).max(), 3 * 0.5 / 256 + 1e-9, "softmax output does not sum to ~1")
                self.assertLess(np.abs(p - E.softmax(m.logits)).mean(), 0.02)
                self.assertGreater(len(np.unique(m.q.argmax(1))), 1, "constant output")

    def test_file_rules(self) -> None:
        for name, m in self.models():
            with self.subTest(model=name):
                info = m.info
                data = m.path.read_bytes()
                self.assertEqual(data[4:8], b"TFL3")
                self.assertEqual(info["version"], 3)
                self.assertEqual(info["description"], "edge test classifier")
                self.assertTrue(info["buffers_aligned"], "buffer data not 16-byte aligned")
                self.assertLessEqual(info["size"], E.MAX_BYTES)
                for op in info["ops"]:
                    self.assertEqual(op["deprecated_code"], op["code"])
                    self.assertLessEqual(op["version"], MAX_VERSION[op["code"]], E.op_name(op["code"]))
                    self.assertGreaterEqual(op["version"], 1)
                t = info["tensors"]
                for tt in t:
                    if tt["type"] == TensorType.INT8:
                        self.assertIsNotNone(tt["scale"], f"{tt['name']}: int8 without quantization")
                inp = t[info["inputs"][0]]
                self.assertEqual(inp["shape"], [1, SIZE, SIZE, 1])
                self.assertEqual(inp["type"], TensorType.INT8)
                self.assertAlmostEqual(inp["scale"][0], 1 / 255, places=9)
                self.assertEqual(inp["zero_point"], [-128])
                out = t[info["outputs"][0]]
                self.assertEqual(out["shape"], [1, 3])
                self.assertEqual(out["scale"], [1 / 256])
                self.assertEqual(out["zero_point"], [-128])
                for op in info["ops"]:
                    ins, outs = [t[i] for i in op["inputs"]], [t[i] for i in op["outputs"]]
                    code = op["code"]
                    if code == Op.CONV_2D:
                        x, w, b = ins
                        cout = w["shape"][0]
                        self.assertEqual(len(w["shape"]), 4)
                        self.assertEqual(w["shape"][1:3], [3, 3])
                        self.assertEqual(w["shape"][3], x["shape"][3], "weights not OHWI")
                        self.assertEqual(len(w["scale"]), cout, "conv weights not per-channel")
                        self.assertEqual(w["zero_point"], [0] * cout)
                        self.assertEqual(w["qdim"], 0)
                        self.assertEqual(b["type"], TensorType.INT32)
                        np.testing.assert_allclose(b["scale"], np.float32(np.array(w["scale"]) * x["scale"][0]), rtol=1e-6)
                        self.assertEqual(b["zero_point"], [0] * cout)
                        o = Conv2DOptions.Conv2DOptions()
                        o.Init(op["options"].Bytes, op["options"].Pos)
                        self.assertEqual(o.FusedActivationFunction(), 1)  # RELU
                        self.assertGreaterEqual(o.StrideW(), 1)
                        self.assertEqual(o.StrideW(), o.StrideH())
                    elif code == Op.FULLY_CONNECTED:
                        x, w, b = ins
                        self.assertEqual(len(w["scale"]), 1, "FC weights must have ONE per-tensor scale")
                        self.assertEqual(w["zero_point"], [0])
                        self.assertAlmostEqual(b["scale"][0], np.float32(w["scale"][0] * x["scale"][0]), delta=1e-6 * b["scale"][0])
                    elif code in (Op.MAX_POOL_2D, Op.AVERAGE_POOL_2D, Op.RESHAPE, Op.PAD):
                        self.assertEqual((outs[0]["scale"], outs[0]["zero_point"]),
                                         (ins[0]["scale"], ins[0]["zero_point"]),
                                         f"{E.op_name(code)} output quantization differs from its input's")
                        if code != Op.RESHAPE and code != Op.PAD:
                            o = Pool2DOptions.Pool2DOptions()
                            o.Init(op["options"].Bytes, op["options"].Pos)
                            self.assertGreaterEqual(o.StrideW(), 1)
                            if code == Op.AVERAGE_POOL_2D:
                                self.assertEqual(o.FilterWidth(), ins[0]["shape"][2])
                    elif code == Op.MEAN:
                        self.assertEqual(outs[0]["shape"], [1, ins[0]["shape"][3]])
                        o = ReducerOptions.ReducerOptions()
                        o.Init(op["options"].Bytes, op["options"].Pos)
                        self.assertFalse(o.KeepDims())
                    elif code == Op.SOFTMAX:
                        o = SoftmaxOptions.SoftmaxOptions()
                        o.Init(op["options"].Bytes, op["options"].Pos)
                        self.assertEqual(op["options_type"], BuiltinOptions.SoftmaxOptions)
                        self.assertEqual(o.Beta(), 1.0)

    def test_ops(self) -> None:
        names = lambda m: [E.op_name(o["code"]) for o in m.info["ops"]]  # noqa: E731
        self.assertEqual(names(self.m), ["CONV_2D", "MAX_POOL_2D", "CONV_2D", "CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"])
        self.assertEqual(names(self.strided), ["PAD", "CONV_2D", "MAX_POOL_2D", "CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"])
        self.assertEqual(names(self.avg), ["CONV_2D", "MAX_POOL_2D", "CONV_2D", "AVERAGE_POOL_2D", "RESHAPE",
                                           "FULLY_CONNECTED", "SOFTMAX"])
        # XNNPACK (QS8 flag) takes everything but SOFTMAX in one partition with MEAN; with
        # AVERAGE_POOL_2D the int8 pool (and the RESHAPE) stay on built-in kernels.
        self.assertEqual(E.execution_plan(self.m.path), ["DELEGATE:TfLiteXNNPackDelegate", "SOFTMAX"])
        self.assertEqual(E.execution_plan(self.strided.path), ["DELEGATE:TfLiteXNNPackDelegate", "SOFTMAX"])
        self.assertIn("AVERAGE_POOL_2D", E.execution_plan(self.avg.path))

    def test_metadata(self) -> None:
        meta = json.loads(self.m.info["metadata"]["edge"].decode("utf-8"))
        self.assertRegex(meta.pop("sha256"), "^[0-9a-f]{64}$")
        self.assertEqual(E.verify_digest(Path(self.m.path).read_bytes()), "ok")
        want = {"schema": 1, "task": "test", "labels": LABELS,
                "input": {"width": SIZE, "height": SIZE, "channels": 1, "color": "gray"},
                "framing": self.m.framing, "flip_average": False,
                "macs": count_macs(self.m.model.arch, "test"), "dataset_crop": 0.8, "training": self.m.training}
        self.assertEqual(meta, want)
        # rewriting the metadata leaves the numerics alone
        meta2 = E.metadata_json("test", LABELS, SIZE, self.m.framing, 1, 0.8, {"x": 1})
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "m.tflite"
            E.rewrite_metadata(self.m.graph, p, "test", meta2)
            self.assertEqual(E.without_digest(E.read_model(p)["metadata"]["edge"]), E.without_digest(meta2))
            self.assertEqual(E.verify_digest(p.read_bytes()), "ok")
            np.testing.assert_array_equal(E.run_tflite(p, self.m.x[:50]), self.m.q[:50])

    def test_restamp(self) -> None:
        # A file written before digests (metadata without "sha256") gets one from stamp.py,
        # with its buffers and numerics unchanged; a changed byte then fails the check.
        import stamp
        old_meta = json.dumps(E.without_digest(self.m.info["metadata"]["edge"]), separators=(",", ":")).encode()
        old = E.serialize(self.m.graph, [0], [len(self.m.graph.tensors) - 1], "edge test classifier", old_meta)
        self.assertEqual(stamp.verify(old), "none")
        new = stamp.restamp(old)
        self.assertEqual(stamp.verify(new), "ok")
        changed = [i for i in range(len(old)) if old[i] != new[i]]
        self.assertLessEqual(len(changed), 4, "only the metadata buffer's data offset may change")
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "m.tflite"
            p.write_bytes(new)
            np.testing.assert_array_equal(E.run_tflite(p, self.m.x[:50]), self.m.q[:50])
            self.assertEqual(E.without_digest(E.read_model(p)["metadata"]["edge"]), json.loads(old_meta))
        for at in (100, len(old) // 2, len(new) - 10):
            bad = bytearray(new)
            bad[at] ^= 1
            self.assertNotEqual(stamp.verify(bytes(bad)), "ok", f"byte {at} changed unnoticed")

    def test_restamp_level(self) -> None:
        # --level on a stamped file: the framing gains "level", the digest is renewed, the
        # weights and the answers stay.
        import stamp
        old = self.m.path.read_bytes()
        self.assertEqual(stamp.verify(old), "ok")
        new = stamp.restamp(old, level=True)
        self.assertEqual(stamp.verify(new), "ok")
        changed = [i for i in range(len(old)) if old[i] != new[i]]
        self.assertLessEqual(len(changed), 4, "only the metadata buffer's data offset may change")
        before = E.without_digest(E.read_model(self.m.path)["metadata"]["edge"])
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "m.tflite"
            p.write_bytes(new)
            after = E.without_digest(E.read_model(p)["metadata"]["edge"])
            np.testing.assert_array_equal(E.run_tflite(p, self.m.x[:50]), self.m.q[:50])
        self.assertEqual(after["framing"], {**before["framing"], "level": True})
        self.assertEqual({k: v for k, v in after.items() if k != "framing"},
                         {k: v for k, v in before.items() if k != "framing"})

    def test_framing_level(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "framing.json"
            p.write_text(json.dumps({h: {"scale": 1.1, "offset_x": 0, "offset_y": 0.1} for h in ("age", "emotion")}))
            self.assertEqual(E.load_framing(p, "age")["level"], True)
            self.assertNotIn("level", E.load_framing(p, "emotion"))
            self.assertEqual(E.load_framing(Path(d) / "none.json", "gender")["level"], True)

    def test_pool_requantization(self) -> None:
        """The pooling ops' int8 outputs, read from truncated copies of the graph, equal the
        average/max of their int8 inputs requantized by hand (to 1 LSB), on both kernels."""
        for name, m in (("plain", self.m), ("avg", self.avg)):
            g = m.graph
            t = g.tensors
            for op in g.ops:
                if op.code not in (Op.MEAN, Op.AVERAGE_POOL_2D, Op.MAX_POOL_2D):
                    continue
                src, dst = op.inputs[0], op.outputs[0]
                with tempfile.TemporaryDirectory() as d:
                    pa, pb = Path(d) / "a.tflite", Path(d) / "b.tflite"
                    pa.write_bytes(E.serialize(g, [0], [src], "t", b"{}"))
                    pb.write_bytes(E.serialize(g, [0], [dst], "t", b"{}"))
                    for xnn in (False, True):
                        with self.subTest(model=name, op=E.op_name(op.code), xnnpack=xnn):
                            a = E.run_tflite(pa, m.x[:64], xnnpack=xnn).reshape(64, *t[src].shape[1:])
                            b = E.run_tflite(pb, m.x[:64], xnnpack=xnn).reshape(64, -1)
                            sa, za = t[src].scale[0], t[src].zero_point[0]
                            sb, zb = t[dst].scale[0], t[dst].zero_point[0]
                            real = (a.astype(np.float64) - za) * sa
                            if op.code == Op.MAX_POOL_2D:
                                n, h, w, c = real.shape
                                ref = real.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4)).reshape(n, -1)
                            else:
                                ref = real.mean(axis=(1, 2))
                            want = np.clip(np.round(ref / sb) + zb, -128, 127)
                            self.assertLessEqual(np.abs(want - b).max(), 1)

    def test_tiny_fixture(self) -> None:
        """The committed Go fixtures (grey and Y, Cb, Cr) still load and give their recorded
        outputs, and --tiny regenerates them byte for byte."""
        for name, color, channels in (("tiny", "gray", 1), ("tiny_ycbcr", "ycbcr", 3)):
            with self.subTest(name):
                path = E.ROOT / "tflite" / "testdata" / f"{name}.tflite"
                exp = json.loads((E.ROOT / "tflite" / "testdata" / f"{name}_expected.json").read_text())
                self.assertEqual(exp["input"]["shape"], [1, exp["height"], exp["width"], channels])
                for case in exp["cases"]:
                    px = np.array(case["pixels"], dtype=np.uint8).reshape(exp["height"], exp["width"], channels)
                    np.testing.assert_array_equal(E.run_tflite(path, px[None])[0], case["int8"])
                    np.testing.assert_array_equal(E.run_tflite(path, px[None], xnnpack=True)[0], case["int8_xnnpack"])
                    self.assertEqual(int(np.argmax(case["int8"])), int(np.argmax(case["probs_float"])))
                meta = json.loads(E.read_model(path)["metadata"]["edge"])
                self.assertEqual(meta["task"], "test")
                self.assertEqual((meta["input"]["color"], meta["input"]["channels"]), (color, channels))
                with tempfile.TemporaryDirectory() as d:
                    p = Path(d) / f"{name}.tflite"
                    subprocess.run([sys.executable, str(HERE / "export.py"), "--tiny", str(p), "--tiny-color", color],
                                   check=True, capture_output=True)
                    self.assertEqual(p.read_bytes(), path.read_bytes(), "--tiny output changed: regenerate the fixture")
                    self.assertEqual(json.loads((Path(d) / f"{name}_expected.json").read_text())["cases"], exp["cases"])


class SmokeCheckpointTest(unittest.TestCase):
    """End to end through the CLI on a `train.py --smoke` checkpoint, trained on the synthetic fixture
    (fixture.py) so that it needs no ../shared."""

    def test_cli_on_smoke_checkpoint(self) -> None:
        import data
        import fixture

        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            fixture.write(d / "data")
            env = {**os.environ, "EDGE_DATA": str(d / "data"), "EDGE_CACHE": str(d / "cache")}
            subprocess.run([sys.executable, str(HERE / "train.py"), "--task", "emotion", "--smoke", "--batch", "32",
                            "--threads", "1", "--out", str(d)], check=True, capture_output=True, env=env)
            out, rep = d / "emotion.tflite", d / "report.json"
            r = subprocess.run([sys.executable, str(HERE / "export.py"), "--head", "emotion", "--ckpt", str(d / "emotion.pt"),
                                "--out", str(out), "--report", str(rep), "--framing", str(d / "none.json"),
                                "--calib", "100", "--smoke"], capture_output=True, text=True, env=env)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("WARNING: no framing", r.stderr)
            self.assertIn("smoke export checked", r.stdout)
            report = json.loads(rep.read_text())
            self.assertLessEqual(report["prob_mae"], E.SMOKE_MAX_PROB_ERROR)
            self.assertEqual(report["n"], fixture.FER_COUNTS["val"] * len(data.EMOTIONS))
            self.assertEqual(report["calib"], 100)
            self.assertEqual(report["bytes"], out.stat().st_size)
            meta = json.loads(E.read_model(out)["metadata"]["edge"])
            self.assertEqual(meta["labels"], data.EMOTIONS)
            self.assertEqual(meta["framing"], E.DEFAULT_FRAMING)
            self.assertEqual(meta["input"], {"width": 48, "height": 48, "channels": 1, "color": "gray"})
            self.assertEqual(meta["dataset_crop"], 1.0)
            self.assertIn("val_accuracy_int8", meta["training"])


if __name__ == "__main__":
    unittest.main()
