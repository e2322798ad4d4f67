"""The ranking side of the generality baseline (see baseline.py): LambdaRank over candidate
items with pair features, scored with rdl's MAP@k."""
import lightgbm as lgb
import numpy as np
import pandas as pd

from features import visible

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


def run_rank(info, schema, data, splits, settings, rounds, patience):
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
    for s in settings:
        params = {"objective": "lambdarank", "metric": "map", "eval_at": [k], "verbosity": -1,
                  "seed": 0, "learning_rate": 0.08, **s}
        d = lgb.Dataset(p_tr[RANK_FEATURES], p_tr["y"], group=p_tr.groupby("_q").size().to_numpy())
        dv = lgb.Dataset(p_vf[RANK_FEATURES], p_vf["y"], group=p_vf.groupby("_q").size().to_numpy())
        m = lgb.train(params, d, rounds, valid_sets=[dv],
                      callbacks=[lgb.early_stopping(patience, verbose=False)])
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


