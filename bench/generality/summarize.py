#!/usr/bin/env python3
"""Summarizes a generality run: one row per (seed, task) with the test metric of rdl
(`rdl_evaluate` output, RESULTS/<seed>-<task>.rdl.json) and of the baseline
(RESULTS/<seed>-<task>.baseline.json). Usage: summarize.py RESULTS_DIR"""
import glob
import json
import os
import sys

# (rdl_evaluate key, baseline metrics key, higher is better)
METRIC = {
    "binary_classification": ("auroc", "test_auroc", True),
    "regression": ("mae", "test_mae", False),
    "multiclass_classification": ("accuracy", "test_accuracy", True),
    "ranking": ("map_at_k", "test_map_at_k", True),
}


def main(d):
    rows, wins, n = [], 0, 0
    # The bar's two averages: AUROC, accuracy and MAP differences in points; MAE in percent
    # of the baseline's (positive: rdl better).
    gains = {"points": [], "mae_pct": []}
    for b in sorted(glob.glob(os.path.join(d, "*.baseline.json"))):
        base = json.load(open(b))
        name = os.path.basename(b)[: -len(".baseline.json")]
        rdl_path = os.path.join(d, f"{name}.rdl.json")
        rdl = json.load(open(rdl_path)) if os.path.exists(rdl_path) else {}
        key, bkey, higher = METRIC[base["task_type"]]
        bv = base["metrics"].get(bkey)
        rv = rdl.get(key)
        if isinstance(rv, (int, float)) and isinstance(bv, (int, float)):
            n += 1
            wins += (rv > bv) if higher else (rv < bv)
            if higher:
                gains["points"].append(rv - bv)
            elif bv:
                gains["mae_pct"].append(100 * (bv - rv) / bv)
        fmt = lambda x: f"{x:.4f}" if isinstance(x, (int, float)) else "-"
        rows.append(f"| {name} | {base['task_type']} | {key} | {fmt(rv)} | {fmt(bv)} |")
    print("| database-task | type | metric | rdl | baseline |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nrdl better on {wins} of {n} pairs with both results")
    if gains["points"]:
        g = gains["points"]
        print(f"AUROC / accuracy / MAP: rdl minus baseline, mean {sum(g) / len(g):+.4f} over {len(g)} pairs")
    if gains["mae_pct"]:
        g = gains["mae_pct"]
        print(f"MAE: rdl lower than the baseline by {sum(g) / len(g):+.1f}% on average over {len(g)} pairs")


if __name__ == "__main__":
    main(sys.argv[1])
