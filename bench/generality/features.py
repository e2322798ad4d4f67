"""Schema, data loading and the time-correct features of the generality baseline
(see baseline.py). Every row reaches a feature through `visible()`, which asserts that
its time is not after the anchor."""
import io
import re
import shlex
import subprocess

import numpy as np
import pandas as pd

TIME_NAMES = ["created_at", "created", "creation_time", "inserted_at", "event_time",
              "occurred_at", "timestamp", "ts", "time", "datetime", "date"]
TIME_TYPES = ("date", "timestamp without time zone", "timestamp with time zone")
NUM_TYPES = ("integer", "bigint", "smallint", "double precision", "real", "numeric")


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
        for c in hi_card:
            # Frequency among the rows known at each anchor (all rows of a static table).
            f = np.full(len(m), np.nan)
            for a in (m["anchor_time"].unique() if tcol else [None]):
                known = df if a is None else visible(df, tcol, a)
                sel = np.ones(len(m), dtype=bool) if a is None else (m["anchor_time"] == a).to_numpy()
                f[sel] = m.loc[sel, c].map(known[c].value_counts(normalize=True)).to_numpy(dtype=float)
            out[f"{prefix}{c}_freq"] = np.where(hidden, np.nan, f)
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
