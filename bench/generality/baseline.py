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
"""
import argparse
import io
import json
import re
import shlex
import subprocess
import sys
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.stats import rankdata

TIME_NAMES = ["created_at", "created", "creation_time", "inserted_at", "event_time",
              "occurred_at", "timestamp", "ts", "time", "datetime", "date"]
TIME_TYPES = ("date", "timestamp without time zone", "timestamp with time zone")
NUM_TYPES = ("integer", "bigint", "smallint", "double precision", "real", "numeric")
DAY = pd.Timedelta(days=1)
MAX_TRAIN = 60_000


# ----------------------------------------------------------------------------- schema


def is_attribute_date(name):
    n = name.lower()
    return (n == "dob" or "birth" in n or n.startswith("born") or "expir" in n
            or "deadline" in n or n.startswith("due") or n.startswith("valid_"))


def detect_time_column(columns):
    """rdl's rule: the only date/timestamp column, else the first conventional name."""
    cands = [c for c, t in columns.items()
             if t.split("(")[0] in TIME_TYPES and not is_attribute_date(c)]
    if len(cands) == 1:
        return cands[0]
    for want in TIME_NAMES:
        for c in cands:
            if c.lower() == want:
                return c
    return None


class Schema:
    def __init__(self):
        self.columns = {}   # table -> {column: pg type}
        self.pk = {}        # table -> [columns]
        self.fks = []       # {table, columns, ref_table, ref_columns}
        self.time = {}      # table -> time column or None

    def finish(self):
        for t, cols in self.columns.items():
            self.time[t] = detect_time_column(cols)
        return self

    def key_columns(self, table):
        keys = set(self.pk.get(table, []))
        for fk in self.fks:
            if fk["table"] == table:
                keys.update(fk["columns"])
        return keys


class Pg:
    def __init__(self, args):
        self.args = shlex.split(args)

    def query(self, sql):
        out = subprocess.run(["psql", "-X", "-q", "-At", "-F", "\t", *self.args, "-c", sql],
                             check=True, capture_output=True, text=True).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def copy(self, table):
        out = subprocess.run(
            ["psql", "-X", "-q", *self.args, "-c",
             f'\\copy (SELECT * FROM public."{table}") TO STDOUT WITH (FORMAT csv, HEADER true)'],
            check=True, capture_output=True, text=True).stdout
        return pd.read_csv(io.StringIO(out), dtype=str, keep_default_na=False, na_values=[""])


def schema_from_pg(pg):
    s = Schema()
    for t, c, ty in pg.query(
            "SELECT c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname, a.attnum"):
        s.columns.setdefault(t, {})[c] = ty
    cols = ("array_to_string(ARRAY(SELECT a.attname FROM unnest(con.{k}) WITH ORDINALITY k(n, o) "
            "JOIN pg_catalog.pg_attribute a ON a.attrelid = con.{r} AND a.attnum = k.n ORDER BY k.o), ',')")
    for kind, t, c, rt, rc in pg.query(
            "SELECT con.contype, cl.relname, " + cols.format(k="conkey", r="conrelid") + ", "
            "coalesce(fcl.relname, ''), " + cols.format(k="confkey", r="confrelid") + " "
            "FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_class cl ON cl.oid = con.conrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = cl.relnamespace "
            "LEFT JOIN pg_catalog.pg_class fcl ON fcl.oid = con.confrelid "
            "WHERE n.nspname = 'public' AND con.contype IN ('p', 'f') ORDER BY con.conname"):
        if kind == "p":
            s.pk[t] = c.split(",")
        else:
            s.fks.append({"table": t, "columns": c.split(","), "ref_table": rt,
                          "ref_columns": rc.split(",")})
    return s.finish()


def schema_from_dir(meta):
    s = Schema()
    for t in meta["tables"]:
        s.columns[t["name"]] = {c["name"]: c["type"] for c in t["columns"]}
        s.pk[t["name"]] = t["primary_key"]
    s.fks = meta["foreign_keys"]
    return s.finish()


def typed(df, schema, table):
    """Converts the string frame read from CSV to typed columns (keys stay strings)."""
    keys = schema.key_columns(table)
    for c, ty in schema.columns[table].items():
        base = ty.split("(")[0]
        if c in keys:
            continue
        if base in TIME_TYPES:
            df[c] = pd.to_datetime(df[c], utc=True, format="mixed")
        elif base in NUM_TYPES:
            df[c] = pd.to_numeric(df[c], errors="coerce")
        elif base == "boolean":
            df[c] = df[c].map({"t": 1.0, "f": 0.0, "true": 1.0, "false": 0.0})
    return df


# ----------------------------------------------------------------------------- task


def parse_task(task):
    q = " ".join(task["query"].split())
    ent = re.search(r"FOR EACH (\w+)\.(\w+)", q, re.I)
    info = {"entity": ent.group(1), "key": ent.group(2), "type": task["task_type"],
            "target_col": None, "window_days": 30.0, "rank": None}
    st = re.match(r"PREDICT (\w+)\.(\w+) FOR EACH", q, re.I)
    if st:
        info["target_col"] = st.group(2)
    w = re.search(r",\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(hours?|days?|weeks?|months?)\s*\)", q, re.I)
    if w:
        per = {"h": 1 / 24, "d": 1, "w": 7, "m": 30.44}[w.group(3)[0].lower()]
        info["window_days"] = max(1.0, (int(w.group(2)) - int(w.group(1))) * per)
    r = re.search(r"LIST_DISTINCT\((\w+)\.(\w+).*RANK TOP (\d+)", q, re.I)
    if r:
        info["rank"] = {"table": r.group(1), "item_col": r.group(2), "k": int(r.group(3))}
    return info


def read_split(path):
    df = pd.read_csv(path, dtype={"entity_id": str, "label_text": str},
                     keep_default_na=False, na_values=[""])
    df["anchor_time"] = pd.to_datetime(df["anchor_time"], utc=True, format="mixed")
    return df


# ----------------------------------------------------------------------------- features


def visible(rows, tcol, anchor):
    """The rows known at `anchor`: the only way rows reach a feature. Asserts it."""
    v = rows[rows[tcol] <= anchor]
    assert v.empty or v[tcol].max() <= anchor, "a row later than the anchor"
    return v


class Features:
    def __init__(self, schema, data, info):
        self.schema, self.data, self.info = schema, data, info
        w = info["window_days"]
        self.windows = sorted({max(1, round(w * f)) for f in (0.25, 0.5, 1, 2, 4, 8)})
        self.w = max(1, round(w))

    def single_fks(self, pred):
        return [fk for fk in self.schema.fks if len(fk["columns"]) == 1 and pred(fk)]

    def value_columns(self, table, exclude=()):
        """(numeric, low-cardinality text, time) non-key columns of `table`."""
        keys = self.schema.key_columns(table) | set(exclude)
        df = self.data[table]
        num, cat, tim = [], [], []
        for c, ty in self.schema.columns[table].items():
            if c in keys or c == self.schema.time[table]:
                continue
            base = ty.split("(")[0]
            if base in NUM_TYPES or base == "boolean":
                num.append(c)
            elif base in TIME_TYPES:
                tim.append(c)
            elif df[c].nunique() <= 50:
                cat.append(c)
        return num, cat, tim

    def rows_of(self, anchors_df, table, key_col, prefix, exclude=()):
        """Columns of `table`'s row whose `key_col` equals `anchors_df._k` (parents)."""
        df = self.data[table]
        num, cat, tim = self.value_columns(table, exclude)
        hi_card = [c for c, ty in self.schema.columns[table].items()
                   if c not in num + cat + tim and c not in self.schema.key_columns(table)
                   and c != self.schema.time[table] and c not in exclude]
        cols = [key_col] + num + cat + tim + hi_card
        tcol = self.schema.time[table]
        if tcol:
            cols.append(tcol)
        m = anchors_df[["_k", "anchor_time"]].merge(
            df[cols].drop_duplicates(key_col), left_on="_k", right_on=key_col, how="left")
        out = pd.DataFrame(index=anchors_df.index)
        hidden = np.zeros(len(m), dtype=bool)
        if tcol:
            # A timed parent that appears after the anchor is not known yet.
            hidden = (m[tcol] > m["anchor_time"]).to_numpy()
            out[f"{prefix}age_days"] = np.where(
                hidden, np.nan, (m["anchor_time"] - m[tcol]).dt.total_seconds().to_numpy() / 86400)
        for c in num:
            out[f"{prefix}{c}"] = np.where(hidden, np.nan, m[c].to_numpy(dtype=float))
        for c in tim:
            out[f"{prefix}{c}_days"] = np.where(
                hidden, np.nan, (m["anchor_time"] - m[c]).dt.total_seconds().to_numpy() / 86400)
        for c in cat:
            out[f"{prefix}{c}"] = pd.Series(np.where(hidden, None, m[c].to_numpy()), index=out.index)
        freq = {c: df[c].value_counts(normalize=True) for c in hi_card}
        for c in hi_card:
            out[f"{prefix}{c}_freq"] = np.where(hidden, np.nan, m[c].map(freq[c]).to_numpy(dtype=float))
        return out

    def entity_and_parents(self, split):
        e, k = self.info["entity"], self.info["key"]
        base = split[["anchor_time"]].copy()
        base["_k"] = split["entity_id"].to_numpy()
        exclude = [self.info["target_col"]] if self.info["target_col"] else []
        parts = [self.rows_of(base, e, k, "", exclude)]
        for fk in self.single_fks(lambda f: f["table"] == e):
            p = fk["ref_table"]
            col = self.data[e].set_index(k)[fk["columns"][0]]
            b1 = base.copy()
            b1["_k"] = b1["_k"].map(col)
            parts.append(self.rows_of(b1, p, fk["ref_columns"][0], f"{fk['columns'][0]}.", ()))
            for fk2 in self.single_fks(lambda f: f["table"] == p and f["ref_table"] != p):
                col2 = self.data[p].set_index(fk["ref_columns"][0])[fk2["columns"][0]]
                b2 = b1.copy()
                b2["_k"] = b2["_k"].map(col2)
                parts.append(self.rows_of(b2, fk2["ref_table"], fk2["ref_columns"][0],
                                          f"{fk['columns'][0]}.{fk2['columns'][0]}.", ()))
        # One-to-one static children (profiles) are columns of the entity in all but name.
        for fk in self.single_fks(lambda f: f["ref_table"] == e and f["table"] != e):
            c, col = fk["table"], fk["columns"][0]
            if not self.schema.time[c] and self.data[c][col].dropna().is_unique:
                parts.append(self.rows_of(base, c, col, f"{c}.", ()))
        return pd.concat(parts, axis=1)

    def child_tables(self):
        """(name, rows with `_e` entity key and `_t` time, value columns) for children and
        grandchildren of the entity (single-column foreign keys, timed tables only)."""
        e = self.info["entity"]
        out = []
        for fk in self.single_fks(lambda f: f["ref_table"] == e):
            c = fk["table"]
            tc = self.schema.time[c]
            df = self.data[c]
            if tc:
                rows = pd.DataFrame({"_e": df[fk["columns"][0]], "_t": df[tc]})
                out.append((f"{c}.{fk['columns'][0]}", c, rows, df))
            if not tc or c == e:
                continue
            ck = self.schema.pk.get(c, [])
            if len(ck) != 1:
                continue
            to_e = df.set_index(ck[0])[fk["columns"][0]]
            c_time = df.set_index(ck[0])[tc]
            for fk2 in self.single_fks(lambda f: f["ref_table"] == c and f["table"] not in (c, e)):
                g = fk2["table"]
                gt = self.schema.time[g]
                if not gt:
                    continue
                gdf = self.data[g]
                via = gdf[fk2["columns"][0]]
                # A grandchild counts once both it and its child row are known.
                t = pd.concat([gdf[gt], via.map(c_time)], axis=1).max(axis=1)
                rows = pd.DataFrame({"_e": via.map(to_e), "_t": t})
                out.append((f"{g}.{fk2['columns'][0]}.{fk['columns'][0]}", g, rows, gdf))
        return out

    def aggregate(self, name, table, rows, df, anchors):
        num, cat, _ = self.value_columns(table)
        cat = [c for c in cat if df[c].nunique() <= 12]
        tops = {c: list(df[c].value_counts().index[:4]) for c in cat}
        # Numeric means of the child's other parents (one more hop), e.g. an item's price.
        for fk in self.single_fks(lambda f: f["table"] == table and f["ref_table"] != self.info["entity"]):
            p = fk["ref_table"]
            pk = fk["ref_columns"][0]
            pnum, _, _ = self.value_columns(p)
            if self.schema.time[p]:
                continue
            for c in pnum[:4]:
                rows[f"{fk['columns'][0]}.{c}"] = df[fk["columns"][0]].map(self.data[p].set_index(pk)[c])
        pcols = [c for c in rows.columns if c not in ("_e", "_t")]
        rows = pd.concat([rows, df[num + cat].reset_index(drop=True)], axis=1)
        rows = rows[rows["_e"].notna()].sort_values("_t", kind="stable")
        frames = []
        for a in anchors:
            v = visible(rows, "_t", a)
            age = (a - v["_t"]).dt.total_seconds() / 86400
            g = v.groupby("_e", sort=False)
            f = {"n_all": g.size(), "days_since_last": age.groupby(v["_e"]).min(),
                 "days_since_first": age.groupby(v["_e"]).max()}
            for w in self.windows:
                f[f"n_{w}d"] = v[age < w].groupby("_e").size()
            recent, recent4 = v[age < self.w], v[age < 4 * self.w]
            for c in num:
                f[f"{c}_sum"], f[f"{c}_mean"] = g[c].sum(), g[c].mean()
                f[f"{c}_min"], f[f"{c}_max"] = g[c].min(), g[c].max()
                f[f"{c}_last"] = g[c].last()
                f[f"{c}_sum_{self.w}d"] = recent.groupby("_e")[c].sum()
                f[f"{c}_mean_{4 * self.w}d"] = recent4.groupby("_e")[c].mean()
            for c in pcols:
                f[f"{c}_mean"] = g[c].mean()
            for c in cat:
                for val in tops[c]:
                    f[f"{c}={val}"] = v[v[c] == val].groupby("_e").size()
            fr = pd.DataFrame(f)
            for w in self.windows:
                fr[f"n_{w}d"] = fr[f"n_{w}d"].fillna(0)
            n1 = recent.groupby("_e").size().reindex(fr.index).fillna(0)
            n4 = recent4.groupby("_e").size().reindex(fr.index).fillna(0)
            fr["trend"] = n1 / (n4 / 4 + 1)
            fr["anchor_time"] = a
            frames.append(fr.rename_axis("_e").reset_index())
        out = pd.concat(frames, ignore_index=True)
        return out.rename(columns={c: f"{name}:{c}" for c in out.columns if c not in ("_e", "anchor_time")})

    def build(self, split):
        own = self.entity_and_parents(split).reset_index(drop=True)
        keyed = split[["entity_id", "anchor_time"]].reset_index(drop=True).rename(columns={"entity_id": "_e"})
        anchors = sorted(split["anchor_time"].unique())
        parts = [own]
        for name, table, rows, df in self.child_tables():
            agg = self.aggregate(name, table, rows.reset_index(drop=True), df.reset_index(drop=True), anchors)
            m = keyed.merge(agg, on=["_e", "anchor_time"], how="left")
            counts = [c for c in m.columns if re.search(r":(n_\d+d|n_all|trend|.*=.*)$", c)]
            m[counts] = m[counts].fillna(0)
            parts.append(m.drop(columns=["_e", "anchor_time"]))
        return pd.concat(parts, axis=1)


def encode(frames):
    """Text columns as categories fitted on train (the first frame); unseen values NaN."""
    train = frames[0]
    for c in train.columns:
        if not (pd.api.types.is_numeric_dtype(train[c]) or pd.api.types.is_bool_dtype(train[c])):
            cats = pd.Index(train[c].dropna().unique())
            for f in frames:
                f[c] = pd.Categorical(f[c], categories=cats)
    return frames


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


# ----------------------------------------------------------------------------- ranking


def fk_path(schema, table, entity):
    """The shortest chain of single-column foreign keys from `table` up to `entity`."""
    frontier = [(table, [])]
    seen = {table}
    while frontier:
        nxt = []
        for t, path in frontier:
            for fk in schema.fks:
                if fk["table"] != t or len(fk["columns"]) != 1:
                    continue
                p = path + [fk]
                if fk["ref_table"] == entity:
                    return p
                if fk["ref_table"] not in seen:
                    seen.add(fk["ref_table"])
                    nxt.append((fk["ref_table"], p))
        frontier = nxt
    raise SystemExit(f"no foreign-key path from {table} to {entity}")


def interactions(schema, data, info):
    r = info["rank"]
    df = data[r["table"]]
    e = df[fk_path(schema, r["table"], info["entity"])[0]["columns"][0]]
    for fk in fk_path(schema, r["table"], info["entity"])[1:]:
        e = e.map(data[fk["table"]].set_index(schema.pk[fk["table"]][0])[fk["columns"][0]])
    rows = pd.DataFrame({"_e": e, "_t": df[schema.time[r["table"]]], "_i": df[r["item_col"]]})
    return rows.dropna().sort_values("_t", kind="stable")


RANK_FEATURES = ["own_n", "own_n_w", "own_n_4w", "own_days_since", "pop_w", "pop_4w", "pop_all",
                 "item_age", "pop_rank_w", "ent_n_w"]


def rank_pairs(rows, split, w, n_pop=50):
    """Candidate (query, item) pairs with features; candidates are the entity's past items
    and the `n_pop` most popular items of the last window before the anchor."""
    out = []
    q0 = 0
    for a, grp in split.groupby("anchor_time", sort=True):
        v = visible(rows, "_t", a)
        age = (a - v["_t"]).dt.total_seconds() / 86400
        pop_w = v[age < w].groupby("_i").size()
        pop_4w = v[age < 4 * w].groupby("_i").size()
        pop_all = v.groupby("_i").size()
        first = age.groupby(v["_i"]).max()
        top = (pop_w if len(pop_w) else pop_all).sort_values(ascending=False).index[:n_pop]
        qs = grp.reset_index(drop=True)
        qs["_q"] = np.arange(q0, q0 + len(qs))
        q0 += len(qs)
        own = v[v["_e"].isin(set(qs["entity_id"]))]
        oage = age[own.index]
        oc = own.groupby(["_e", "_i"]).size().rename("own_n")
        last = oage.groupby([own["_e"], own["_i"]]).min().rename("own_days_since")
        ow = own[oage < w].groupby(["_e", "_i"]).size().rename("own_n_w")
        o4 = own[oage < 4 * w].groupby(["_e", "_i"]).size().rename("own_n_4w")
        ent_w = own[oage < w].groupby("_e").size().rename("ent_n_w")
        own_pairs = oc.reset_index()[["_e", "_i"]]
        pop_pairs = qs[["entity_id"]].rename(columns={"entity_id": "_e"}).merge(
            pd.DataFrame({"_i": top}), how="cross")
        pairs = pd.concat([own_pairs, pop_pairs]).drop_duplicates()
        pairs = qs[["entity_id", "_q", "label_text"]].rename(columns={"entity_id": "_e"}).merge(pairs, on="_e")
        for s in (oc, last, ow, o4):
            pairs = pairs.merge(s.reset_index(), on=["_e", "_i"], how="left")
        pairs = pairs.merge(ent_w.reset_index(), on="_e", how="left")
        pairs["pop_w"] = pairs["_i"].map(pop_w)
        pairs["pop_4w"] = pairs["_i"].map(pop_4w)
        pairs["pop_all"] = pairs["_i"].map(pop_all)
        pairs["item_age"] = pairs["_i"].map(first)
        pairs["pop_rank_w"] = pairs["_i"].map(pd.Series(np.arange(len(top)), index=top))
        for c in ("own_n", "own_n_w", "own_n_4w", "pop_w", "pop_4w", "pop_all", "ent_n_w"):
            pairs[c] = pairs[c].fillna(0)
        out.append(pairs)
    pairs = pd.concat(out, ignore_index=True).sort_values(["_q", "_i"], kind="stable")
    labels = {}
    for q, t in pairs[["_q", "label_text"]].drop_duplicates("_q").itertuples(index=False):
        labels[q] = set(str(t).strip("{}").split(",")) if isinstance(t, str) else set()
    pairs["y"] = [int(i in labels[q]) for q, i in zip(pairs["_q"], pairs["_i"].astype(str))]
    return pairs


def map_at_k(pairs, scores, split, k):
    """rdl's MAP@k: over examples with a non-empty label; relevant items that were not
    candidates count as misses; each query's AP divides by min(k, |relevant|)."""
    pairs = pairs.assign(s=scores)
    top = {q: list(g.sort_values("s", ascending=False)["_i"].astype(str))[:k]
           for q, g in pairs.groupby("_q")}
    total, n = 0.0, 0
    for q, t in enumerate(split["label_text"]):
        rel = set(str(t).strip("{}").split(",")) if isinstance(t, str) and t != "{}" else set()
        if not rel:
            continue
        n += 1
        hits, s = 0, 0.0
        for i, item in enumerate(top.get(q, [])):
            if item in rel:
                hits += 1
                s += hits / (i + 1)
        total += s / min(k, len(rel))
    return total / n if n else float("nan")


def run_rank(info, schema, data, splits):
    rows = interactions(schema, data, info)
    rows["_i"] = rows["_i"].astype(str)
    rows["_e"] = rows["_e"].astype(str)
    w, k = info["window_days"], info["rank"]["k"]
    train = splits["train"]
    if len(train) > 20_000:
        train = train.sample(20_000, random_state=0).sort_values(["anchor_time", "entity_id"])
    p_tr, p_va = rank_pairs(rows, train.reset_index(drop=True), w), rank_pairs(rows, splits["val"], w)
    p_te = rank_pairs(rows, splits["test"], w)
    # Only queries with a positive candidate teach the ranker anything.
    p_tr = p_tr[p_tr.groupby("_q")["y"].transform("max") > 0]
    p_vf = p_va[p_va.groupby("_q")["y"].transform("max") > 0]
    best = None
    for s in SETTINGS:
        params = {"objective": "lambdarank", "metric": "map", "eval_at": [k], "verbosity": -1,
                  "seed": 0, "learning_rate": 0.08, **s}
        d = lgb.Dataset(p_tr[RANK_FEATURES], p_tr["y"], group=p_tr.groupby("_q").size().to_numpy())
        dv = lgb.Dataset(p_vf[RANK_FEATURES], p_vf["y"], group=p_vf.groupby("_q").size().to_numpy())
        m = lgb.train(params, d, ROUNDS, valid_sets=[dv],
                      callbacks=[lgb.early_stopping(PATIENCE, verbose=False)])
        v = map_at_k(p_va, m.predict(p_va[RANK_FEATURES], num_iteration=m.best_iteration),
                     splits["val"], k)
        if best is None or v > best[0]:
            best = (v, s, m)
    m = best[2]
    test = map_at_k(p_te, m.predict(p_te[RANK_FEATURES], num_iteration=m.best_iteration),
                    splits["test"], k)
    pop = map_at_k(p_te, -p_te["pop_rank_w"].fillna(1e9).to_numpy(), splits["test"], k)
    return {"val_map_at_k": best[0], "test_map_at_k": test, "k": k,
            "test_map_at_k_popularity": pop,
            "test_candidate_pairs": len(p_te)}, best, len(RANK_FEATURES)


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
        metrics, best, n_feat = run_rank(info, schema, data, splits)
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
