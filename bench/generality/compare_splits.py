#!/usr/bin/env python3
"""Checks that two sets of split CSVs hold the same labels: the generator's in-memory
labels (DIR/splits) against rdl's label SQL (DIR/splits_sql, from `psql -f splits.sql`) or
against `rdl_task_table` exports. Usage: compare_splits.py DIR_A DIR_B [TASK ...] (default:
every task of DIR_A). Exit 1 on a difference."""
import csv
import math
import os
import sys


def read(path):
    with open(path, newline="") as f:
        return [(r["entity_id"], r["anchor_time"], r["label"], r["label_text"]) for r in csv.DictReader(f)]


def same(a, b):
    if a[:2] != b[:2] or a[3] != b[3]:
        return False
    if a[2] == b[2]:
        return True
    try:
        return math.isclose(float(a[2]), float(b[2]), rel_tol=1e-9, abs_tol=1e-6)
    except ValueError:
        return False


def main(a_dir, b_dir, tasks):
    bad = 0
    for task in tasks or sorted(os.listdir(a_dir)):
        for split in ("train", "val", "test"):
            a = read(os.path.join(a_dir, task, f"{split}.csv"))
            b = read(os.path.join(b_dir, task, f"{split}.csv"))
            diffs = [(x, y) for x, y in zip(a, b) if not same(x, y)]
            ok = len(a) == len(b) and not diffs
            bad += not ok
            print(f"{task:32} {split:5} {len(a):7} {len(b):7} {'same' if ok else 'DIFFERENT'}")
            for x, y in diffs[:3]:
                print("   ", x, "\n   ", y)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
