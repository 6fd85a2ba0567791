"""Read a .tflite that export.py wrote back into a trainable EdgeNet checkpoint.

    /usr/bin/python3 models/importer.py models/gender.tflite build/import/gender.pt

The float checkpoints of the shipped models are not in the repository; their int8 files
are. This rebuilds the network from the file's own graph (conv widths and strides, max
pools, head size) and metadata (input size, colour, labels, crop), with every weight and
bias dequantised (int8 × per-channel scale; int32 bias × input scale × weight scale) and
BatchNorms as identities, so `train.py --init` can fine-tune a shipped model (with
`--qat` or after a float fine-tune and a fresh export). The float network of the import
is not the one that was exported (its weights carry the int8 rounding), but its
predictions agree with the .tflite's on nearly every image (test_importer.py measures it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import export  # noqa: E402  (puts the generated tflite package on the path)
from net import Arch, EdgeNet, count_macs  # noqa: E402
from tflite import Conv2DOptions, Model  # noqa: E402
from tflite.BuiltinOperator import BuiltinOperator  # noqa: E402
from tflite.TensorType import TensorType  # noqa: E402

_NP = {TensorType.INT8: np.int8, TensorType.INT32: np.int32}


def checkpoint_from_tflite(path: Path | str) -> dict:
    """A train.py-style checkpoint (arch, state, head, labels, crop) for the model in path."""
    blob = Path(path).read_bytes()
    info = export.read_model(path)
    if "edge" not in info["metadata"]:
        raise ValueError(f"{path}: no edge metadata: not a model export.py wrote")
    meta = json.loads(info["metadata"]["edge"])
    fb = Model.Model.GetRootAs(blob, 0)
    tensors = info["tensors"]

    def array(ti: int) -> np.ndarray:
        t = tensors[ti]
        raw = fb.Buffers(t["buffer"]).DataAsNumpy()
        return np.frombuffer(raw.tobytes(), dtype=_NP[t["type"]]).reshape(t["shape"])

    in_scale = float(tensors[info["inputs"][0]]["scale"][0])
    stages: list[list[int]] = [[0, 0]]
    convs: list[tuple[np.ndarray, np.ndarray]] = []
    stem_stride, fc = 1, None
    for op in info["ops"]:
        code = max(op["code"], op["deprecated_code"])
        if code == BuiltinOperator.CONV_2D:
            xi, wi, bi = op["inputs"]
            w, b = array(wi).astype(np.float64), array(bi).astype(np.float64)
            ws = np.asarray(tensors[wi]["scale"], dtype=np.float64)
            xs = float(tensors[xi]["scale"][0])
            wf = (w * ws.reshape(-1, 1, 1, 1)).transpose(0, 3, 1, 2)  # OHWI -> OIHW
            bf = b * ws * xs
            opts = Conv2DOptions.Conv2DOptions()
            opts.Init(op["options"].Bytes, op["options"].Pos)
            if not convs:
                stem_stride = opts.StrideW()
            convs.append((wf, bf))
            cout = wf.shape[0]
            if stages[-1][1] and stages[-1][0] != cout:
                raise ValueError(f"{path}: conv width changes from {stages[-1][0]} to {cout} without a pool")
            stages[-1] = [cout, stages[-1][1] + 1]
        elif code == BuiltinOperator.MAX_POOL_2D:
            stages.append([0, 0])
        elif code == BuiltinOperator.FULLY_CONNECTED:
            xi, wi, bi = op["inputs"]
            w, b = array(wi).astype(np.float64), array(bi).astype(np.float64)
            ws = float(tensors[wi]["scale"][0])
            fc = (w * ws, b * ws * float(tensors[xi]["scale"][0]))
    if fc is None or not convs:
        raise ValueError(f"{path}: no convolutions or no fully connected head")
    task = meta["task"]
    arch = Arch(input_size=int(meta["input"]["width"]), stages=[tuple(s) for s in stages], stem_stride=stem_stride,
                heads={task: len(meta["labels"])}, color=meta["input"].get("color", "gray"))
    net = EdgeNet(arch)
    state = net.state_dict()
    ci = 0
    for i, m in enumerate(net.features):
        if isinstance(m, torch.nn.MaxPool2d):
            continue
        bn = m[1]
        w, b = convs[ci]
        if tuple(state[f"features.{i}.0.weight"].shape) != w.shape:
            raise ValueError(f"{path}: conv {ci} has shape {w.shape}, the rebuilt network {tuple(state[f'features.{i}.0.weight'].shape)}")
        state[f"features.{i}.0.weight"] = torch.from_numpy(w).float()
        # identity BatchNorm: export.fold multiplies by weight / sqrt(running_var + eps) = 1
        state[f"features.{i}.1.weight"] = torch.ones(bn.num_features)
        state[f"features.{i}.1.bias"] = torch.from_numpy(b).float()
        state[f"features.{i}.1.running_mean"] = torch.zeros(bn.num_features)
        state[f"features.{i}.1.running_var"] = torch.full((bn.num_features,), 1.0 - bn.eps)
        ci += 1
    state[f"heads.{task}.weight"] = torch.from_numpy(fc[0]).float()
    state[f"heads.{task}.bias"] = torch.from_numpy(fc[1]).float()
    net.load_state_dict(state)  # checks every name and shape
    # The input scale is the exporter's fixed 1/255: the float network takes pixel / 255.
    if abs(in_scale / export.INPUT_SCALE - 1) > 1e-6:  # stored as float32
        raise ValueError(f"{path}: input scale {in_scale}, export.py writes {export.INPUT_SCALE}")
    return {"arch": arch.to_dict(), "state": net.state_dict(), "head": task, "epoch": 0,
            "val_accuracy": meta.get("training", {}).get("val_accuracy_int8"), "labels": meta["labels"],
            "macs": count_macs(arch, task), "crop": meta.get("dataset_crop", 1.0), "qat": False,
            "imported_from": str(path)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tflite", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    ck = checkpoint_from_tflite(args.tflite)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, args.out)
    a = Arch.from_dict(ck["arch"])
    print(f"{args.tflite} -> {args.out}: {ck['head']} {a.input_size}x{a.input_size} {a.color}, stages {a.stages}, "
          f"stem stride {a.stem_stride}, labels {ck['labels']}, crop {ck['crop']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
