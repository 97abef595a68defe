"""prune on crepe tiny (real weights): latency-aimed against MACs-aimed pruning at the same
measured p50, each then distilled from crepe full for the same budget (issue 16 item 4).

crepe tiny's stem is pruned too (--prune-skip-defaults no; conv6, whose outputs a fixed reshape
feeds to the classifier, and the classifier skipped): its first two convolutions hold ~91% of
the MACs. `auto:latency=0.5` is run through prune.run (sensitivity
scan on the training frames, per-layer latency table with onnxruntime fp32 at --threads, the plan
timed whole); the MACs-aimed plan reuses that scan and its MACs target is bisected until the
pruned model's measured p50 over tiny's (ONNX fp32, interleaved) is within 0.02 of the
latency-aimed one's. Both students get their BatchNorm statistics re-estimated on the training
frames (prune/recalibrate.py; prune.run does it for the latency-aimed one) and are then distilled
from crepe full with benchmarks/distill_crepe.py's data and KD budget (sigmoid KD on the
teacher's probabilities, the same epochs, the best epoch on its validation frames), and scored
on its held-out frames (the call from 20 s and ARCTIC 2-4 s): share of voiced frames (crepe
full's peak >= 0.5) whose decoded pitch is within 50 cents of crepe full's.

    python benchmarks/prune_crepe.py [--threads 1] [--epochs N] [--work DIR] [--latency-only]

The last line is JSON (benchmarks/prune.py reads it).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import distill_crepe, tasks  # noqa: E402
from benchmarks.models import crepe  # noqa: E402
from edgepress.compress import calibrate, distill, load, prune  # noqa: E402
from edgepress.compress.prune import auto, choice, latency, recalibrate, trials  # noqa: E402
from edgepress.errors import UserError  # noqa: E402

TARGET = 0.5


def agreement(model, held: dict) -> float:
    """% of the held-out voiced frames within 50 cents of crepe full's pitch."""
    with torch.no_grad():
        out = model.eval()(x=torch.from_numpy(held["x"][:, 0])).numpy()
    err = np.abs(tasks.cents(out) - held["ref_cents"])
    return 100.0 * float(np.mean(err < tasks.PITCH_TOLERANCE_CENTS))


def macs_matched(tiny, example, scan, base_cfg, goal_ratio, where) -> tuple:
    """The MACs target whose plan's measured p50 ratio is within 0.02 of goal_ratio (bisection
    on the reused scan): (target, ratios, measured)."""
    lo, hi, best = 0.05, 0.95, None
    for _ in range(6):
        target = (lo + hi) / 2
        try:
            ratios = choice.choose(tiny, example, scan, base_cfg, target)
        except UserError:  # the scan's ratios do not reach that low: aim higher
            lo = target
            continue
        measured = latency.measured_ratio(tiny, trials.prune_layers(tiny, example, base_cfg,
                                                                  ratios), example, where)
        best = (target, ratios, measured)
        if abs(measured["ratio"] - goal_ratio) <= 0.02:
            break
        lo, hi = (target, hi) if measured["ratio"] < goal_ratio else (lo, target)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=distill_crepe.EPOCHS)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--latency-only", action="store_true", help="stop after the latency-aimed "
                    "plan (its rounds and ratios; no MACs-aimed plan, no KD): minutes, not an hour")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    t0, load_before = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="edgepress-crepe-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        row = run(work, args.threads, args.epochs, args.latency_only)
    row["wall_s"] = round(time.perf_counter() - t0)
    row["load"] = {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(row))
    return 0


def run(work: Path, threads: int, epochs: int, latency_only: bool = False) -> dict:
    loaded = load.open_source(distill_crepe.TRAINABLE, None, ("1,1024",))
    tiny, teacher = loaded.model, crepe.crepe_full()
    split = distill_crepe.splits(work)
    paths = split["paths"]
    train = calibrate.open_data(str(paths["train"]), loaded.inputs)
    val = calibrate.open_data(str(paths["val"]), loaded.inputs)
    held = dict(np.load(paths["eval"]))
    example = load.example(loaded)
    where = latency.Where(threads=threads, cache=str(work / "latency-tables"))
    cfg = prune.parse(f"auto:latency={TARGET:g}", skip=distill_crepe.PRUNE["prune_skip"],
                      skip_defaults=False,
                      importance=distill_crepe.PRUNE["prune_importance"],
                      latency_threads=threads, latency_cache=where.cache)
    lat_student = copy.deepcopy(tiny)
    fig = prune.run(lat_student, cfg, example, train).figures
    lat_measured = choice.chosen_round(fig["auto"]["latency"])
    lat_rounds = [f"{r['goal']:.3f}/{r['predicted']:.3f}/{r['ratio']:.3f}"
                  for r in fig["auto"]["latency"]["rounds"]]
    if latency_only:
        return {"crepe_p50": lat_measured["ratio"], "lat_macs": fig["macs"]["ratio"],
                "lat_ratios": fig["auto"]["chosen_ratios"], "lat_rounds": lat_rounds,
                "table_scale": fig["auto"]["latency"]["table_scale"]}
    skipped = prune.skipped_layers(tiny, cfg, example)
    base_cfg = replace(cfg, method="channels", skip=tuple(skipped), skip_defaults=False)
    scan = {"layers": fig["auto"]["scan"], "macs": fig["macs"]["before"],
            "ratios": list(auto.RATIOS)}
    macs_target, macs_ratios, macs_measured = macs_matched(tiny, example, scan, base_cfg,
                                                           lat_measured["ratio"], where)
    macs_student = trials.prune_layers(tiny, example, base_cfg, macs_ratios)
    recalibrate.batchnorms(macs_student, train)  # as prune.run did for the latency-aimed one
    budget = {k.removeprefix("distill_"): v for k, v in {**distill_crepe.BUDGET,
                                                         **distill_crepe.KD}.items()}
    kd = replace(distill.DistillConfig(), method="logits", epochs=epochs, train_device="cpu",
                 metric=distill_crepe.METRIC, **budget)
    scores = {"tiny": agreement(tiny, held), "lat_pruned": agreement(lat_student, held),
              "macs_pruned": agreement(macs_student, held)}
    for key, student in (("lat_kd", lat_student), ("macs_kd", macs_student)):
        distill.fit(student, teacher, kd, train, val, progress=False)
        scores[key] = agreement(student, held)
    return {"crepe_p50": lat_measured["ratio"], "crepe_macs_p50": macs_measured["ratio"],
            "macs_target": round(macs_target, 4), "lat_macs": fig["macs"]["ratio"],
            "macs_macs": round(prune.macs(macs_student, example) / fig["macs"]["before"], 4),
            "lat_ratios": fig["auto"]["chosen_ratios"], "macs_ratios": macs_ratios,
            # the two aims may choose one plan: then their KD figures differ by noise only
            "same_plan": macs_ratios == fig["auto"]["chosen_ratios"],
            "lat_rounds": lat_rounds,
            "epochs": epochs, "train_frames": split["sizes"]["train"],
            "voiced_eval_frames": split["sizes"]["eval"],
            **{k: round(v, 2) for k, v in scores.items()}}


if __name__ == "__main__":
    sys.exit(main())
