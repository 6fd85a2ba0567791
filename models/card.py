"""Print the model card's result tables (models/MODEL_CARD.md) from `edge eval --json`.

Every figure comes from running the committed .tflite files through go-tflite, crop-fed
and through the detector (`--detect`), on the val sets:

    python3 models/card.py [--edge build/bin/edge] [--data ../shared/data] [--models models]

and the camera-realistic validation's table from `edge eval --camera --save` files (make val-camera):

    python3 models/card.py --camera build/val-camera/utkface.json build/val-camera/fer2013.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETS = {"emotion": "fer2013", "age": "utkface", "gender": "utkface"}
THESIS = {"emotion": 0.6755, "age": 0.7381, "gender": 0.9684}
BARS = {"emotion": 0.70, "age": 0.79, "gender": 0.93}
NAMES = {"emotion": "emotion (FER2013 val)", "age": "age category (UTKFace val)", "gender": "gender (UTKFace val)"}
HEADINGS = {"emotion": "Emotion", "age": "Age category", "gender": "Gender"}


def evaluate(edge: Path, task: str, model: Path, data: Path, detect: bool, labels: str = "dataset") -> dict:
    cmd = [str(edge), "eval", "--task", task, "--model", str(model), "--data", str(data), "--json", "--labels", labels]
    if detect:
        cmd.append("--detect")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def adults(res: dict) -> tuple[int, float]:
    """Accuracy over true ages 20+ (the age groups but 0-19)."""
    gs = [g for name, g in res["groups"]["age"].items() if name != "0-19"]
    n = sum(g["n"] for g in gs)
    return n, sum(g["correct"] for g in gs) / n


def camera_tables(paths: list[Path]) -> None:
    """The camera validation table: one row per condition, per task the accuracy on the
    faces found, the drop from the same images' own crops, and the faces found."""
    runs = [json.loads(p.read_text()) for p in paths]
    tasks = [(r, t) for r in runs for t in r["tasks"]]
    head = "| condition | " + " | ".join(f"{t}: found / on found / drop" for _, t in tasks) + " |"
    print(head)
    print("|---|" + "---:|" * len(tasks))
    print("| own crops, no detector | " + " | ".join(f"- / {r['crop_accuracy'][t]:.3f} / -" for r, t in tasks) + " |")
    for i, c in enumerate(runs[0]["conditions"]):
        cells = []
        for r, t in tasks:
            cr = r["conditions"][i]
            if cr["condition"]["name"] != c["condition"]["name"]:
                raise SystemExit(f"{paths}: the runs have different conditions")
            s = cr["tasks"][t]
            cells.append(f"{cr['face_rate']:.3f} / {s['accuracy_on_faces']:.3f} / {-s['drop_points']:+.1f}")
        print(f"| {c['condition']['name']} | " + " | ".join(cells) + " |")
    print("\nWorst single condition (accuracy on faces found, points from own crops): " + "; ".join(
        f"{t} {r['worst'][t]['condition']} {r['worst'][t]['accuracy_on_faces']:.3f} ({-r['worst'][t]['drop_points']:+.1f})"
        for r, t in tasks) + ".")
    print("Images per data set: " + ", ".join(f"{Path(r['data']).parent.name} {r['sampled']} ({r['seconds']:.0f} s)" for r in runs) + ".")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edge", type=Path, default=ROOT / "build" / "bin" / "edge")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--camera", type=Path, nargs="+", help="print the camera validation table from these "
                    "`edge eval --camera --save` files instead")
    args = ap.parse_args()
    if args.camera:
        camera_tables(args.camera)
        return

    crop, det = {}, {}
    for task, ds in SETS.items():
        data = args.data / ds / "val.tar.gz"
        model = args.models / f"{task}.tflite"
        crop[task] = evaluate(args.edge, task, model, data, False)
        det[task] = evaluate(args.edge, task, model, data, True)

    print("| model | val accuracy | `--detect`: faces found | `--detect`: accuracy on faces found "
          "| thesis prototype | target of the model issue |")
    print("|---|---:|---:|---:|---:|---:|")
    for task in SETS:
        c, d = crop[task], det[task]
        acc = f"**{c['accuracy']:.4f}**"
        if task == "gender":
            acc += f"; adults 20+: {adults(c)[1]:.4f}"
        print(f"| {NAMES[task]} | {acc} | {d['face_rate']:.3f} | {d['accuracy_on_faces']:.3f} "
              f"| {THESIS[task]} | {BARS[task]:.2f} |")
    fp = evaluate(args.edge, "emotion", args.models / "emotion.tflite", args.data / SETS["emotion"] / "val.tar.gz",
                  False, "ferplus")
    print(f"\nEmotion on FER+ majority labels (val, {fp['n']} images; {fp['unlabelled']} with a tied, contempt, "
          f"unknown or not-a-face majority left out): **{fp['accuracy']:.4f}**.")

    for task in SETS:
        c, d = crop[task], det[task]
        print(f"\n### {HEADINGS[task]}\n\n**Per class** (int8 through go-tflite, val, crop-fed):\n")
        print("| class | n | recall | precision |\n|---|---:|---:|---:|")
        for label in c["labels"]:
            s = c["per_class"][label]
            print(f"| {label} | {s['n']} | {s['recall']:.3f} | {s['precision']:.3f} |")
        if not c.get("groups"):
            continue
        print("\n**Fairness: accuracy by true group** (crop-fed; and through the detector, "
              "`--detect`, on the faces it found):\n")
        print("| group | n | accuracy | `--detect` faces found | `--detect` accuracy on faces |")
        print("|---|---:|---:|---:|---:|")
        for kind in ("age", "gender", "race"):
            for name, g in c["groups"][kind].items():
                dg = d["groups"][kind][name]
                found = dg["n"] - dg.get("no_face", 0)
                on_faces = dg["correct"] / found if found else float("nan")
                print(f"| {kind} {name} | {g['n']} | {g['accuracy']:.3f} | {found / dg['n']:.3f} | {on_faces:.3f} |")
        if task == "gender":
            n, acc = adults(c)
            print(f"\nAdults (20+): n {n}, accuracy {acc:.4f}.")


if __name__ == "__main__":
    main()
