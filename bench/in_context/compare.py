#!/usr/bin/env python3
"""Zero-shot results (the lines `bench/in_context.sh` prints) next to rdl trained per task
and the LightGBM baseline on the same test splits, as `bench/generality.sh` measured them
(its table in bench/generality/README.md, or another file holding that table).

Usage: compare.py ZERO_SHOT_OUTPUT [GENERALITY_TABLE_MD]
"""
import re
import sys
from pathlib import Path

ROW = re.compile(
    r"\| (\d+)-([\w-]+) \| (binary|regression) \| [^|]+\| \**([\d.]+)\** \| \**([\d.]+)\** \|")
ZS = re.compile(r"zero-shot seed (\d+) (\S+)\s+(Binary|Regression) ([\d.]+)")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    table = Path(sys.argv[2] if len(sys.argv) > 2 else
                 Path(__file__).resolve().parent.parent / "generality" / "README.md")
    measured = {}
    for line in table.read_text().splitlines():
        m = ROW.match(line)
        if m:
            measured[(int(m[1]), m[2])] = (m[3], float(m[4]), float(m[5]))
    zero = {}
    for line in Path(sys.argv[1]).read_text().splitlines():
        m = ZS.match(line)
        if m:
            zero[(int(m[1]), m[2])] = float(m[4])
    print("| seed-task | metric | zero-shot | rdl trained | LightGBM |")
    print("|---|---|---|---|---|")
    auc_rdl, auc_lgb, mae_rdl, mae_lgb = [], [], [], []
    for key, (kind, rdl, lgb) in sorted(measured.items()):
        z = zero.get(key)
        if z is None:
            continue
        metric = "test AUROC ↑" if kind == "binary" else "test MAE ↓"
        print(f"| {key[0]}-{key[1]} | {metric} | {z:.4f} | {rdl:.4f} | {lgb:.4f} |")
        if kind == "binary":
            auc_rdl.append(z - rdl)
            auc_lgb.append(z - lgb)
        else:
            mae_rdl.append(z / rdl - 1)
            mae_lgb.append(z / lgb - 1)
    mean = lambda v: sum(v) / len(v) if v else float("nan")
    print(f"\nbinary ({len(auc_rdl)} pairs): zero-shot - rdl trained {mean(auc_rdl):+.4f} AUROC "
          f"(higher on {sum(d > 0 for d in auc_rdl)}), zero-shot - LightGBM {mean(auc_lgb):+.4f} "
          f"(higher on {sum(d > 0 for d in auc_lgb)})")
    print(f"regression ({len(mae_rdl)} pairs): MAE {100 * mean(mae_rdl):+.1f}% against rdl trained, "
          f"{100 * mean(mae_lgb):+.1f}% against LightGBM")


if __name__ == "__main__":
    main()
