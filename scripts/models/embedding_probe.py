"""How well a model's embedding tells an object it was never trained on (the star) from the
objects it knows, measured the way the runtime sees embeddings — before anything on the device
is changed for it.

Run inside the training venv (scripts/models/venv.sh):
    python scripts/models/embedding_probe.py --model runtime/models/default/default_f32.tflite \
        --tinylcm target/release/tinylcm [--json out.json]

The runtime's feature path is reproduced: L2-normalised embedding, standardised with the mean
and (population) standard deviation of the initial state's reference frames (100 normal frames
per known class, seed 7, as scripts/make-initial-state), Euclidean 5-NN. Figures, all on
held-out frames of other seeds:

* `reference`: leave-one-out mean 5-NN distance of the reference frames (the unit every planner
  threshold is a factor of) and its standard deviation;
* `star`: per star frame its mean 5-NN distance to the reference (× reference mean), the star
  frames' compactness (mean distance to their centroid, × reference mean; the planner wants ≤
  1.5) and their centroid's mean distance to the 5 nearest samples of the nearest class (×
  reference mean; the planner proposes a class above 2.0);
* `linear_probe`: a logistic regression trained on star-vs-known labels of one seed, scored on
  another (precision and recall of "star") — an upper bound of what any rule could find;
* `knn_new_class`: 8 star frames of one seed (spread over the stretch) added to the reference
  KNN as a class of their own; on held-out frames of every phase of another seed, the purity
  (share of frames the new class takes that show the star) and recall (share of star frames it
  takes). This is what the scorecard measures once a round proposes the class.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import tempfile

import numpy as np
from PIL import Image

import frame_resize as rz
import tflcommon as tc

KNOWN = ["empty", "ball", "box", "bar"]
K = 5
H = W = 96


def synth(tinylcm: str, out: pathlib.Path, phase: str, per_class: int, seed: int, classes):
    cmd = [tinylcm, "synth", "--out", str(out), "--per-class", str(per_class), "--seed", str(seed),
           "--phase", phase, "--width", "320", "--height", "240", "--classes", ",".join(classes)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def load(d: pathlib.Path):
    xs, names = [], []
    for cls in sorted(p for p in d.iterdir() if p.is_dir()):
        for f in sorted(cls.glob("*.png")):
            img = np.asarray(Image.open(f).convert("RGB"), dtype=np.uint8)
            xs.append(rz.resize(img, H, W, "triangle").astype(np.float32) / 255.0)
            names.append(cls.name)
    return np.stack(xs), np.array(names)


def embed(model: bytes, x: np.ndarray) -> np.ndarray:
    it = tc.interpreter(model)
    idx = {o["name"]: i for i, o in enumerate(it.get_output_details())}
    return np.stack([tc.run(it, xi[None])[idx["embedding"]][0] for xi in x])


def knn_dist(q: np.ndarray, pool: np.ndarray, k: int = K, loo: bool = False) -> np.ndarray:
    d = np.sqrt(((q[:, None, :] - pool[None]) ** 2).sum(2))
    if loo:
        np.fill_diagonal(d, np.inf)
    return np.sort(d, 1)[:, :k].mean(1)


def knn_vote(q, pool, labels, k: int = K):
    d = ((q[:, None, :] - pool[None]) ** 2).sum(2)
    nn = np.argsort(d, 1, kind="stable")[:, :k]
    out = []
    for row in labels[nn]:
        vals, counts = np.unique(row, return_counts=True)
        out.append(vals[counts.argmax()])
    return np.array(out)


def logistic(xtr, ytr, xte, steps: int = 3000, lr: float = 0.1, l2: float = 1e-3):
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    a, b = (xtr - mu) / sd, (xte - mu) / sd
    w, c = np.zeros(a.shape[1]), 0.0
    pos = ytr.mean()
    sw = np.where(ytr == 1, 0.5 / pos, 0.5 / (1 - pos))  # balanced classes
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(a @ w + c)))
        g = (p - ytr) * sw
        w -= lr * (a.T @ g / len(a) + l2 * w)
        c -= lr * g.mean()
    return 1 / (1 + np.exp(-(b @ w + c))) > 0.5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, type=pathlib.Path)
    ap.add_argument("--tinylcm", required=True)
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args()
    model = args.model.read_bytes()
    work = pathlib.Path(tempfile.mkdtemp(prefix="tinylcm-probe-"))
    sets = {
        "ref": ("normal", 100, 7, KNOWN),
        "star_a": ("unseen", 160, 21, ["star"]),
        "known_a": ("unseen", 40, 22, KNOWN),
        "star_b": ("unseen", 200, 1003, ["star"]),
        "normal_b": ("normal", 50, 1001, KNOWN),
        "lighting_b": ("lighting", 50, 1002, KNOWN),
        "unseen_known_b": ("unseen", 13, 1003, KNOWN),
        "noise_b": ("noise", 50, 1004, KNOWN),
    }
    emb, names = {}, {}
    for key, (phase, n, seed, classes) in sets.items():
        synth(args.tinylcm, work / key, phase, n, seed, classes)
        x, names[key] = load(work / key)
        emb[key] = embed(model, x)

    def l2(e):
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

    mu = l2(emb["ref"]).mean(0)
    sd = l2(emb["ref"]).std(0)
    sd = np.where(sd < 10 * np.finfo(np.float64).eps, 1.0, sd)
    f = {k: (l2(v) - mu) / sd for k, v in emb.items()}
    ref, ref_lab = f["ref"], names["ref"]
    loo = knn_dist(ref, ref, loo=True)
    rmean, rsd = float(loo.mean()), float(loo.std())

    star = f["star_a"]
    centroid = star.mean(0)
    compact = float(np.linalg.norm(star - centroid, axis=1).mean() / rmean)
    per_class = {c: float(knn_dist(centroid[None], ref[ref_lab == c])[0] / rmean) for c in KNOWN}
    star_nn = knn_dist(star, ref) / rmean
    known_nn = knn_dist(f["known_a"], ref) / rmean

    # Linear probe: star vs known, trained on seed a, scored on seed b.
    xtr = np.concatenate([f["star_a"], f["known_a"], f["ref"]])
    ytr = np.concatenate([np.ones(len(f["star_a"])), np.zeros(len(f["known_a"]) + len(ref))])
    xte = np.concatenate([f["star_b"], f["normal_b"], f["lighting_b"], f["noise_b"],
                          f["unseen_known_b"]])
    yte = np.concatenate([np.ones(len(f["star_b"])), np.zeros(len(xte) - len(f["star_b"]))])
    pred = logistic(xtr, ytr, xte)
    probe = {"precision": float((pred & (yte == 1)).sum() / max(pred.sum(), 1)),
             "recall": float((pred & (yte == 1)).sum() / (yte == 1).sum())}

    # A new class of 8 star frames of seed a, spread over them.
    reps = star[np.linspace(0, len(star) - 1, 8).astype(int)]
    pool = np.concatenate([ref, reps])
    labels = np.concatenate([ref_lab, np.array(["new"] * len(reps))])
    votes = {k: knn_vote(f[k], pool, labels) for k in
             ("star_b", "normal_b", "lighting_b", "noise_b", "unseen_known_b")}
    taken_star = int((votes["star_b"] == "new").sum())
    taken_other = {k: int((v == "new").sum()) for k, v in votes.items() if k != "star_b"}
    taken = taken_star + sum(taken_other.values())
    new_class = {"purity": taken_star / max(taken, 1), "recall": taken_star / len(f["star_b"]),
                 "taken_from_known_by_phase": taken_other}
    # And what the star frames are called before learning.
    before = knn_vote(f["star_b"], ref, ref_lab)
    star_called = {c: int((before == c).sum()) for c in KNOWN}

    out = {
        "model": str(args.model), "dim": int(ref.shape[1]),
        "reference": {"mean": rmean, "sd": rsd},
        "star": {"knn_distance_x_ref": [float(np.percentile(star_nn, q)) for q in (10, 50, 90)],
                 "known_in_unseen_knn_distance_x_ref": [float(np.percentile(known_nn, q)) for q in (10, 50, 90)],
                 "compactness_x_ref": compact, "centroid_to_class_x_ref": per_class,
                 "called_before": star_called},
        "linear_probe": probe,
        "knn_new_class": new_class,
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
