"""Will a lines model hold up on the course's own images and on other students' drawings? Score it.

    python benchmarks/bench_course_lines.py                       # newest complete lines run
    python benchmarks/bench_course_lines.py --ckpt path/to/best.ckpt --per-class 50
    python benchmarks/bench_course_lines.py --folder path/to/classes   # the course's real folders, if you have them

For each image set it prints what the independent geometry checker (pipeline/data/line_geometry.py)
measures and the model's accuracy per head and aggregate. Sets: the pipeline's own ``course``
style (the course's generator, exactly; another seed than training), ``soft`` and ``sheet``,
and the renderer zoo of ``standin_lines.py`` (OpenCV LINE_AA / LINE_8 lines, Pillow lines and
polygons, OpenCV rotated rectangles and warped blocks, each saved as its library saves by default:
JPEG 95, 85 and 75 and PNG), which shares no drawing code with the pipeline, and its stress sets
(JPEG 50-75, for information). Bars (issue 25): course style >= 99.5 % aggregate and every
head; every zoo renderer >= 98 % aggregate. Needs opencv-python-headless (requirements-dev.txt).
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from _timing import cpu_model  # (also puts the repository root on sys.path)
from standin_lines import STANDINS, STRESS

from pipeline.data.line_geometry import angle_error, measure_lines
from pipeline.data.line_styles import STYLES, draw_params, render
from pipeline.data.lines_labels import ANGLES_DEG, NUM_CLASSES, decode_label, join_label, split_label
from pipeline.training.lit_module import head_predictions

ROOT = Path(__file__).resolve().parents[1]



def style_set(style: str, per_class: int, seed: int, **changes):
    labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), per_class)
    st = dataclasses.replace(STYLES[style], **changes) if changes else STYLES[style]
    images, _ = render(draw_params(labels, st, seed))
    return images, labels


def folder_set(root: str):
    from pipeline.data.lines_folder import read_lines_folder

    data = read_lines_folder(Path(root))
    return data.images, data.labels


def geometry_row(images, labels) -> str:
    m, d = measure_lines(images), decode_label(labels)
    med = lambda key, head, k: np.median(m[key][d[head] == k])  # noqa: E731
    err = angle_error(m["angle_deg"], np.asarray(ANGLES_DEG)[d["angle"]])
    return (f"len {med('length', 'length', 0):4.1f}/{med('length', 'length', 1):4.1f}  "
            f"wid {med('width', 'width', 0):4.2f}/{med('width', 'width', 1):4.2f}  "
            f"peak {np.median(m['peak']):3.0f} ({np.percentile(m['peak'], 5):3.0f}-{np.percentile(m['peak'], 95):3.0f})  "
            f"x {m['centre_x'].mean():4.1f}±{m['centre_x'].std():3.1f} y {m['centre_y'].mean():4.1f}±{m['centre_y'].std():3.1f}  "
            f"angle err {np.median(err):.2f}°")


@torch.no_grad()
def accuracy(net, heads: dict, images: np.ndarray, labels: np.ndarray, batch: int = 1024) -> dict[str, float]:
    x_all = torch.from_numpy(images)
    y = torch.from_numpy(labels)
    preds = {h: [] for h in heads}
    for i in range(0, len(x_all), batch):
        out = net(x_all[i:i + batch].float() / 255)
        for h in heads:
            preds[h].append(head_predictions(out[h]))
    preds = {h: torch.cat(v) for h, v in preds.items()}
    target = split_label(y, heads)
    res = {h: float((preds[h] == target[h]).float().mean()) for h in heads}
    res["aggregate"] = float((join_label(preds, heads) == y).float().mean())
    return res


def newest_lines_checkpoint() -> Path:
    from pipeline.training.registry import find_latest_run

    return find_latest_run(ROOT / "outputs", "lines", "multihead").best_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", help="checkpoint (default: best of the newest complete lines multihead run)")
    parser.add_argument("--per-class", type=int, default=50, help="images per class in each set")
    parser.add_argument("--seed", type=int, default=101, help="seed of the sets (training used generator_seed=0)")
    parser.add_argument("--no-stress", action="store_true", help="skip the stress sets (lower JPEG qualities)")
    parser.add_argument("--folder", help="also score a folder of course images (class folders L_W_A_C/)")
    args = parser.parse_args()

    from pipeline.training.lit_module import LitClassifier

    ckpt = Path(args.ckpt) if args.ckpt else newest_lines_checkpoint()
    module = LitClassifier.load_from_checkpoint(str(ckpt), map_location="cpu", weights_only=True)
    net, heads = module.net.eval(), dict(module.head_classes)
    print(f"checkpoint: {ckpt}\nCPU: {cpu_model()}, torch threads {torch.get_num_threads()}\n")

    n, s = args.per_class, args.seed
    sets = {
        "course (ours)": lambda: style_set("course", n, s),
        "soft (ours)": lambda: style_set("soft", n, s),
        "sheet (ours)": lambda: style_set("sheet", n, s),
    }
    for name, (fn, kw, _) in {**STANDINS, **({} if args.no_stress else STRESS)}.items():
        sets[name] = (lambda fn=fn, kw=kw: fn(per_class=n, seed=s, **kw))
    if args.folder:
        sets[f"folder {args.folder}"] = lambda: folder_set(args.folder)

    rows = []
    for name, make in sets.items():
        t0 = time.perf_counter()
        images, labels = make()
        acc = accuracy(net, heads, images, labels)
        rows.append((name, acc))
        print(f"{name:<20} {geometry_row(images, labels)}   ({len(labels)} images, {time.perf_counter() - t0:.1f} s)")
    cols = [*heads, "aggregate"]
    print(f"\n{'set':<20} " + " ".join(f"{c:>9}" for c in cols) + "   bar")
    for name, acc in rows:
        if name == "course (ours)":
            ok, bar = all(acc[c] >= 0.995 for c in cols), "every head >= 0.995"
        elif name in STANDINS:
            ok, bar = acc["aggregate"] >= 0.98, "aggregate >= 0.98"
        elif name in STRESS:
            ok, bar = None, "(stress set: information)"
        else:
            ok, bar = None, ""
        verdict = "" if ok is None else ("met" if ok else "MISSED")
        print(f"{name:<20} " + " ".join(f"{acc[c]:>9.4f}" for c in cols) + f"   {verdict} {bar}".rstrip())
    for name, (_, _, what) in {**STANDINS, **STRESS}.items():
        print(f"  {name}: {what}")


if __name__ == "__main__":
    main()
