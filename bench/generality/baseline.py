#!/usr/bin/env python3
"""The classical baseline of the generality benchmark: what a data scientist builds by hand.

For each (entity, anchor) of a task's train/val/test tables (CSV files with columns
`entity_id, anchor_time, label[, label_text]`, as rdl exports them with `rdl_task_table`),
features are aggregated automatically over the entity's foreign-key neighbourhood with
every row's time <= the anchor (asserted):
  - the entity's own columns (the target column of a static task excluded), its parents'
    and grandparents' columns (a timed parent newer than the anchor is hidden);
  - for each child table (1 hop) and grandchild table (2 hops, through the child): counts
    in windows scaled to the task's window (W/4 ... 8W) and over all history, days since
    the last and first row, a trend (last W against the last 4W), sum / mean / min / max /
    last value of numeric columns (all history, last W, last 4W), counts of the most
    frequent values of low-cardinality text columns, and means of the child's parents'
    numeric columns;
categorical columns are encoded as LightGBM categories (frequency for high cardinality).
Then LightGBM with early stopping on the validation split and a small search over a
handful of settings, chosen on validation only, never on test. Ranking tasks
(`LIST_DISTINCT ... RANK TOP k`) use a LambdaRank model over candidate items (the entity's
own past items and the most popular recent ones) with pair features.

Tables are read from PostgreSQL with psql (`\\copy ... TO STDOUT CSV HEADER`); the schema
(primary and foreign keys, column types) from pg_catalog; time columns are detected with
rdl's rule (the only date/timestamp column, else a conventional name; attribute dates
such as birth or expiry never). `--data-dir` reads a generator's output directory instead.

Usage:
  baseline.py --task NAME --tasks-json DB/tasks.json --splits DIR
              (--pg "-h HOST -p PORT -U USER -d DB" | --data-dir DB) [--out result.json]
Prints one JSON object: the test metric(s), the validation metric, sizes and timings.
Features live in features.py, the ranking model in ranking.py.
"""
import argparse
import json
import re
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.stats import rankdata

from features import Features, Pg, encode, parse_task, read_split, schema_from_dir, schema_from_pg, typed
from ranking import run_rank

MAX_TRAIN = 60_000


# ----------------------------------------------------------------------------- models

SETTINGS = [
    {"num_leaves": 15, "min_child_samples": 20, "feature_fraction": 0.8},
    {"num_leaves": 63, "min_child_samples": 20, "feature_fraction": 0.8},
    {"num_leaves": 31, "min_child_samples": 100, "feature_fraction": 0.6},
    {"num_leaves": 127, "min_child_samples": 50, "feature_fraction": 0.5, "lambda_l2": 1.0},
]
ROUNDS, PATIENCE = 1000, 30


def auroc(y, p):
    y = np.asarray(y, dtype=float)
    pos, neg = (y == 1).sum(), (y == 0).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    r = rankdata(p)
    return float((r[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def macro_f1(y, yhat, classes):
    f1s = []
    for c in classes:
        tp = np.sum((yhat == c) & (y == c))
        fp, fn = np.sum((yhat == c) & (y != c)), np.sum((yhat != c) & (y == c))
        if tp + fp + fn > 0:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else float("nan")


def fit(kind, setting, X, y, Xv, yv, n_class=None):
    params = {"verbosity": -1, "seed": 0, "learning_rate": 0.08, "max_bin": 127,
              "bagging_fraction": 0.8, "bagging_freq": 1, **setting}
    if kind == "binary":
        params.update(objective="binary", metric="auc")
    elif kind == "multiclass":
        params.update(objective="multiclass", metric="multi_logloss", num_class=n_class)
    else:
        params.update(metric="l1")
    d, dv = lgb.Dataset(X, y), lgb.Dataset(Xv, yv)
    return lgb.train(params, d, num_boost_round=ROUNDS, valid_sets=[dv],
                     callbacks=[lgb.early_stopping(PATIENCE, verbose=False)])


def run_tabular(info, X, y, Xv, yv, Xt, yt):
    """Trains each setting, keeps the best on validation, scores test with it."""
    t = info["type"]
    best = None
    if t == "binary_classification":
        for s in SETTINGS:
            m = fit("binary", s, X, y, Xv, yv)
            v = auroc(yv, m.predict(Xv, num_iteration=m.best_iteration))
            if best is None or v > best[0]:
                best = (v, s, m)
        p = best[2].predict(Xt, num_iteration=best[2].best_iteration)
        return {"val_auroc": best[0], "test_auroc": auroc(yt, p),
                "test_positive_rate": float(np.mean(yt))}, best
    if t == "regression":
        # Four fits as for the other types: two tree shapes, each with L1 and L2 losses.
        for s in SETTINGS[::2]:
            for obj in ("l1", "l2"):
                m = fit("regression", {**s, "objective": obj}, X, y, Xv, yv)
                v = float(np.mean(np.abs(m.predict(Xv, num_iteration=m.best_iteration) - yv)))
                if best is None or v < best[0]:
                    best = (v, {**s, "objective": obj}, m)
        p = best[2].predict(Xt, num_iteration=best[2].best_iteration)
        r2 = 1 - np.sum((p - yt) ** 2) / np.sum((yt - np.mean(yt)) ** 2)
        return {"val_mae": best[0], "test_mae": float(np.mean(np.abs(p - yt))),
                "test_mae_predicting_train_median": float(np.mean(np.abs(np.median(y) - yt))),
                "test_r2": float(r2)}, best
    # Multiclass: classes are the training labels'; unseen classes count as errors.
    classes = sorted(pd.unique(y))
    idx = {c: i for i, c in enumerate(classes)}
    yi = np.array([idx[c] for c in y])
    yvi = np.array([idx.get(c, -1) for c in yv])
    keep = yvi >= 0
    for s in SETTINGS:
        m = fit("multiclass", s, X, yi, Xv[keep], yvi[keep], len(classes))
        pv = m.predict(Xv[keep], num_iteration=m.best_iteration)
        v = float(-np.mean(np.log(np.clip(pv[np.arange(len(pv)), yvi[keep]], 1e-15, 1))))
        if best is None or v < best[0]:
            best = (v, s, m)
    pt = best[2].predict(Xt, num_iteration=best[2].best_iteration)
    yhat = np.array(classes, dtype=object)[pt.argmax(axis=1)]
    yt = np.asarray(yt, dtype=object)
    majority = pd.Series(y).value_counts().index[0]
    return {"val_logloss": best[0], "test_accuracy": float(np.mean(yhat == yt)),
            "test_macro_f1": macro_f1(yt, yhat, classes),
            "test_accuracy_majority_class": float(np.mean(yt == majority)),
            "classes": len(classes)}, best


# ----------------------------------------------------------------------------- main


def clean_names(frames):
    names, seen = [], set()
    for c in frames[0].columns:
        n = re.sub(r"[^0-9A-Za-z_]+", "_", str(c))
        while n in seen:
            n += "_"
        seen.add(n)
        names.append(n)
    for f in frames:
        f.columns = names
    return frames


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True)
    ap.add_argument("--tasks-json", required=True)
    ap.add_argument("--splits", required=True, help="directory with train.csv, val.csv, test.csv")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--pg", help='psql connection options, e.g. "-h /tmp -p 5432 -d bench"')
    src.add_argument("--data-dir", help="a generator's output directory (CSVs + tasks.json)")
    ap.add_argument("--out")
    args = ap.parse_args()
    t0 = time.time()
    meta = json.load(open(args.tasks_json))
    task = next((t for t in meta["tasks"] if t["name"] == args.task), None)
    if task is None:
        raise SystemExit(f"no task {args.task} in {args.tasks_json}")
    info = parse_task(task)
    if args.pg:
        pg = Pg(args.pg)
        schema = schema_from_pg(pg)
        data = {t: pg.copy(t) for t in schema.columns}
    else:
        schema = schema_from_dir(meta)
        data = {t: pd.read_csv(f"{args.data_dir}/{t}.csv", dtype=str, keep_default_na=False,
                               na_values=[""]) for t in schema.columns}
    data = {t: typed(df, schema, t) for t, df in data.items()}
    splits = {s: read_split(f"{args.splits}/{s}.csv") for s in ("train", "val", "test")}
    t_load = time.time()
    sizes = {s: len(df) for s, df in splits.items()}
    if info["rank"]:
        metrics, best, n_feat = run_rank(info, schema, data, splits, SETTINGS, ROUNDS, PATIENCE)
        t_feat = t_load
    else:
        if len(splits["train"]) > MAX_TRAIN:
            splits["train"] = splits["train"].sample(MAX_TRAIN, random_state=0).sort_values(
                ["anchor_time", "entity_id"]).reset_index(drop=True)
        f = Features(schema, data, info)
        X = encode(clean_names([f.build(splits[s]) for s in ("train", "val", "test")]))
        col = "label_text" if info["type"] == "multiclass_classification" else "label"
        y = [splits[s][col].to_numpy() for s in ("train", "val", "test")]
        n_feat = X[0].shape[1]
        t_feat = time.time()
        metrics, best = run_tabular(info, X[0], y[0], X[1], y[1], X[2], y[2])
    t_end = time.time()
    result = {
        "task": task["name"], "query": task["query"], "task_type": info["type"],
        "database": {"seed": meta.get("seed"), "domain": meta.get("domain")},
        "metrics": metrics, "setting": best[1], "trees": best[2].best_iteration,
        "rows": sizes, "train_rows_used": len(splits["train"]) if not info["rank"] else min(sizes["train"], 20_000),
        "features": n_feat,
        "seconds": {"load": round(t_load - t0, 2), "features": round(t_feat - t_load, 2),
                    "train": round(t_end - t_feat, 2), "total": round(t_end - t0, 2)},
    }
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
