//! The predictive tasks of a generated database: PQL strings of the standard forms
//! (churn-like `COUNT(...) = 0`, `COUNT(...) > k`, a regression `SUM`, a 3-hop follow-up
//! count, a multiclass static column, a ranking `LIST_DISTINCT`, an item-side demand task),
//! each compiled with rdl's own compiler against the generated schema (`VIA` added where
//! two foreign-key paths exist), with cutoffs inside the data and thresholds and windows
//! chosen so that the label has both classes (or a spread) in every split.

use serde::Serialize;

use super::db::Database;
use super::labels::Evaluator;
use super::plan::Plan;
use super::DAY;
use crate::anchors::AnchorOptions as TaskOptions;
use crate::base::time::format_timestamp;
use crate::pql::{compile, error::sqlstate, TaskSpec, TaskType};
use crate::schema::SchemaGraph;

/// Label statistics of one split.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SplitStats {
    pub rows: usize,
    /// Positive rate (binary), mean (regression); 0 otherwise.
    pub mean: f64,
    /// Distinct labels (classes, or distinct values).
    pub distinct: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TaskDef {
    pub name: String,
    pub query: String,
    pub task_type: TaskType,
    pub entity_table: String,
    pub entity_key: String,
    /// The options for `rdl_create_task` (cutoffs, windows, anchor step).
    pub options: TaskOptions,
    /// What drives the label, in words.
    pub mechanism: String,
    pub train: SplitStats,
    pub val: SplitStats,
    pub test: SplitStats,
}

struct Builder<'a> {
    db: &'a Database,
    graph: SchemaGraph,
    plan: &'a Plan,
    max_time: i64,
}

/// Statistics of a split's labels.
fn stats(rows: &[super::labels::LabelRow]) -> SplitStats {
    let mut vals: Vec<String> = rows
        .iter()
        .map(|r| match (&r.label, &r.label_text) {
            (_, Some(t)) => t.clone(),
            (Some(x), None) => format!("{x}"),
            _ => String::new(),
        })
        .collect();
    let nums: Vec<f64> = rows.iter().filter_map(|r| r.label).collect();
    let mean = if nums.is_empty() {
        0.0
    } else {
        nums.iter().sum::<f64>() / nums.len() as f64
    };
    vals.sort();
    vals.dedup();
    SplitStats {
        rows: rows.len(),
        mean,
        distinct: vals.len(),
    }
}

impl<'a> Builder<'a> {
    fn new(db: &'a Database, plan: &'a Plan) -> Builder<'a> {
        Builder {
            db,
            graph: db.schema_graph(),
            plan,
            max_time: db.time_range().1,
        }
    }

    /// Options for a window of `h` days: `n` evaluation anchors `step` days apart at the
    /// end of the data for test, the `n` before them for validation.
    fn options(&self, h: i64) -> TaskOptions {
        let days = self.plan.days;
        let step = h.max((days as f64 / 20.0).ceil() as i64);
        let n = ((days as f64 * 0.1 / step as f64) as i64).clamp(1, 6);
        let test = (self.max_time - (h + (n - 1) * step) * DAY).div_euclid(DAY) * DAY;
        let val = test - (h + (n - 1) * step) * DAY;
        TaskOptions {
            val_cutoff: Some(format_timestamp(val)),
            test_cutoff: Some(format_timestamp(test)),
            eval_windows: Some(n as u32),
            anchor_step: Some(format!("{step} days")),
        }
    }

    fn compile(&self, q: &str, o: &TaskOptions) -> Result<TaskSpec, crate::pql::PqlError> {
        compile(q, &self.graph, o)
    }

    /// `table.*`, with `VIA` when the table reaches the entity by several shortest paths.
    fn arg(&self, table: &str, via: &[String], entity: (&str, &str)) -> String {
        let probe = format!(
            "PREDICT COUNT({table}.*, 0, 1, days) FOR EACH {}.{}",
            entity.0, entity.1
        );
        match self.compile(&probe, &TaskOptions::default()) {
            Err(e) if e.sqlstate == sqlstate::AMBIGUOUS_COLUMN && !via.is_empty() => {
                format!("{table}.* VIA {}", via.join(" -> "))
            }
            _ => format!("{table}.*"),
        }
    }

    /// Compiles `query`, computes its splits and keeps it when every split is usable.
    fn task(
        &self,
        name: &str,
        query: String,
        options: TaskOptions,
        mechanism: String,
    ) -> Option<TaskDef> {
        let spec = match self.compile(&query, &options) {
            Ok(s) => s,
            Err(e) => panic!("generated PQL does not compile: {query}: {}", e.message),
        };
        let ev = Evaluator::new(self.db, &spec).ok()?;
        let (train, val, test) = (
            ev.split("train").ok()?,
            ev.split("val").ok()?,
            ev.split("test").ok()?,
        );
        let (train, val, test) = (stats(&train), stats(&val), stats(&test));
        let ok = |s: &SplitStats| {
            s.rows >= 20
                && s.distinct >= 2
                && match spec.task_type {
                    TaskType::BinaryClassification => s.mean > 0.02 && s.mean < 0.98,
                    _ => true,
                }
        };
        if !(ok(&train) && ok(&val) && ok(&test)) {
            return None;
        }
        let (entity_table, entity_key) = (
            spec.entity.table.trim_start_matches("public.").to_string(),
            spec.entity.key_column.clone(),
        );
        Some(TaskDef {
            name: name.into(),
            query,
            task_type: spec.task_type,
            entity_table,
            entity_key,
            options,
            mechanism,
            train,
            val,
            test,
        })
    }

    /// The training labels' values of a regression query (to place thresholds).
    fn train_values(&self, query: &str, options: &TaskOptions) -> Vec<f64> {
        let spec = self.compile(query, options).expect("probe compiles");
        let ev = Evaluator::new(self.db, &spec).expect("probe evaluates");
        let mut v: Vec<f64> = ev
            .split("train")
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r.label)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }
}

/// The ` VIA ...` of a `table.* VIA ...` argument (empty without one), for an aggregate
/// of one of the table's columns along the same path.
fn via_of(arg: &str) -> String {
    arg.split_once(" VIA ")
        .map_or(String::new(), |(_, v)| format!(" VIA {v}"))
}

/// The `k` for `count > k` whose positive rate over the sorted `counts` is nearest `rate`.
fn threshold(counts: &[f64], rate: f64) -> i64 {
    let n = counts.len() as f64;
    (0..=counts.last().copied().unwrap_or(0.0) as i64)
        .min_by(|&a, &b| {
            let r = |k: i64| counts.iter().filter(|&&c| c > k as f64).count() as f64 / n;
            (r(a) - rate).abs().total_cmp(&(r(b) - rate).abs())
        })
        .unwrap_or(0)
}

/// A window (days) in which an average active entity has about two orders.
fn window(db: &Database, plan: &Plan) -> i64 {
    let orders = db.table(&plan.order.table).map_or(0, |t| t.rows()) as f64;
    let exposure = plan.n_entities as f64 * plan.days as f64 * 0.5;
    let rate = (orders / exposure).max(1e-6);
    let want = 2.0 / rate;
    let max = plan.days / 10;
    [7i64, 14, 30, 60, 90, 180]
        .into_iter()
        .filter(|&w| w <= max.max(7))
        .min_by(|a, b| {
            ((*a as f64).ln() - want.ln())
                .abs()
                .total_cmp(&((*b as f64).ln() - want.ln()).abs())
        })
        .unwrap_or(30)
}

/// What drives the order rate in this database, in words (only what it has).
fn drivers(plan: &Plan) -> String {
    let mut d = vec![
        "latent activity",
        "segment",
        "trend",
        "habit",
        "churn hazard",
    ];
    let has = |x: &Option<super::plan::Named>| x.is_some();
    if has(&plan.region) {
        d.push("segment x market-tier interaction");
    }
    if has(&plan.staff) {
        d.push("staff skill");
    }
    if plan.referral.is_some() {
        d.push("referrer's activity");
    }
    if has(&plan.group) {
        d.push("group boosts");
    }
    if has(&plan.session) {
        d.push("short-term intent seen in sessions first");
    }
    if has(&plan.followup) || has(&plan.ticket) {
        d.push("trouble (follow-ups, severe tickets) that lowers activity and raises churn");
    }
    d.join(", ")
}

/// The tasks of `db` (built from `plan`).
pub fn tasks(db: &Database, plan: &Plan) -> Vec<TaskDef> {
    let b = Builder::new(db, plan);
    let d = plan.domain;
    let (e, o) = (&plan.entity, &plan.order);
    let ent = (e.table.as_str(), e.key.as_str());
    let who = super::vocab::singular(&e.table);
    let for_each = format!("FOR EACH {}.{}", e.table, e.key);
    let w = window(db, plan);
    let opts = b.options(w);
    let past = (3 * w).max(90);
    let o_via = vec![format!("{}.{}", o.table, e.key)];
    let oarg = b.arg(&o.table, &o_via, ent);
    let active = format!("WHERE COUNT({oarg}, -{past}, 0, days) > 0");
    let drivers = drivers(plan);
    let mut out = Vec::new();
    let mut push = |t: Option<TaskDef>| out.extend(t);

    push(b.task(
        &format!("{who}-churn"),
        format!("PREDICT COUNT({oarg}, 0, {w}, days) = 0 {for_each} {active}"),
        opts.clone(),
        format!(
            "no {} in the next {w} days among those active in the last {past}: {drivers}",
            o.table
        ),
    ));
    let counts = b.train_values(
        &format!("PREDICT COUNT({oarg}, 0, {w}, days) {for_each}"),
        &opts,
    );
    if !counts.is_empty() {
        let k = threshold(&counts, 0.3);
        push(b.task(
            &format!("{who}-active"),
            format!("PREDICT COUNT({oarg}, 0, {w}, days) > {k} {for_each}"),
            opts.clone(),
            format!("more than {k} {} in the next {w} days: {drivers}", o.table),
        ));
    }
    push(b.task(
        &format!("{who}-spend"),
        format!(
            "PREDICT SUM({}.{}{}, 0, {w}, days) {for_each} {active}",
            o.table,
            d.order.col,
            via_of(&oarg),
        ),
        opts.clone(),
        format!("amount spent in the next {w} days: order rate ({drivers}) times spend level (latent value, segment, country income)"),
    ));
    push(
        b.task(
            &format!("{who}-{}", plan.tier_col.replace('_', "-")),
            format!("PREDICT {}.{} {for_each}", e.table, plan.tier_col),
            TaskOptions::default(),
            "static class cut from a noisy score of latent value, activity, trend and frailty: \
         visible only through behaviour (order frequency, amounts, churn)"
                .into(),
        ),
    );
    more_tasks(&b, &mut push, w, &opts, &active, &who, &for_each);
    out
}

/// Tasks that need optional tables: lines, follow-ups, sessions, tickets, items.
fn more_tasks(
    b: &Builder,
    push: &mut dyn FnMut(Option<TaskDef>),
    w: i64,
    opts: &TaskOptions,
    active: &str,
    who: &str,
    for_each: &str,
) {
    let plan = b.plan;
    let d = plan.domain;
    let (e, o) = (&plan.entity, &plan.order);
    let ent = (e.table.as_str(), e.key.as_str());
    let o_hop = format!("{}.{}", o.table, e.key);
    if let Some(it) = &plan.items {
        // Items are taken by lines when there are lines, else by the orders themselves.
        let (fact, via, qty) = match &plan.lines {
            Some(l) => (
                l,
                vec![format!("{}.{}", l.table, o.key), o_hop.clone()],
                d.line.col,
            ),
            None => (o, vec![o_hop.clone()], d.order.col),
        };
        let farg = b.arg(&fact.table, &via, ent);
        let v = via_of(&farg);
        push(b.task(
            &format!("{who}-next-{}", it.table.replace('_', "-")),
            format!("PREDICT LIST_DISTINCT({}.{}{v}, 0, {w}, days) RANK TOP 10 {for_each}", fact.table, it.key),
            opts.clone(),
            "items taken in the next window: taste per category, season, popularity, repeats of own items".into(),
        ));
        if let (Some(l), Some(f)) = (&plan.lines, &plan.followup) {
            let f_via = vec![
                format!("{}.{}", f.table, l.key),
                via[0].clone(),
                o_hop.clone(),
            ];
            let farg = b.arg(&f.table, &f_via, ent);
            let fw = (2 * w).min(plan.days / 8).max(w);
            push(b.task(
                &format!("{who}-{}", f.table.replace('_', "-")),
                format!("PREDICT COUNT({farg}, 0, {fw}, days) > 0 {for_each} {active}"),
                b.options(fw),
                "follow-ups (3 hops away) in the next window: order volume times item defects (brand quality) and entity frailty".into(),
            ));
        }
        let ifor = format!("FOR EACH {}.{}", it.table, it.key);
        push(b.task(
            &format!("{}-demand", super::vocab::singular(&it.table).replace('_', "-")),
            format!("PREDICT SUM({}.{qty}, 0, {w}, days) {ifor}", fact.table),
            opts.clone(),
            "the item's volume in the next window: popularity (Zipf), category season, launch date, who buys it".into(),
        ));
    }
    if let Some(s) = &plan.session {
        let sarg = b.arg(&s.table, &[], ent);
        let sw = (w / 2).max(7);
        let so = b.options(sw);
        let vals = b.train_values(
            &format!("PREDICT COUNT({sarg}, 0, {sw}, days) {for_each}"),
            &so,
        );
        if !vals.is_empty() {
            let k = threshold(&vals, 0.4);
            push(b.task(
                &format!("{who}-engaged"),
                format!("PREDICT COUNT({sarg}, 0, {sw}, days) > {k} {for_each}"),
                so,
                "sessions in the next window: activity, short-term intent (autocorrelated), habit".into(),
            ));
        }
    }
    if let Some(t) = &plan.ticket {
        let targ = b.arg(&t.table, &[], ent);
        let tw = (2 * w).min(plan.days / 8).max(w);
        let top = d.ticket.values[2];
        push(b.task(
            &format!("{who}-escalation"),
            format!(
                "PREDICT COUNT({} WHERE {}.{} = '{top}', 0, {tw}, days) > 0 {for_each} {active}",
                targ, t.table, d.ticket.col
            ),
            b.options(tw),
            "severe tickets in the next window: trouble (recent follow-ups, severe tickets), frailty".into(),
        ));
    }
}

/// The value of a row of `rows` at quantile `q` (sorted ascending).
fn quantile(rows: &[f64], q: f64) -> f64 {
    rows[((rows.len() - 1) as f64 * q).round() as usize]
}

/// Pretraining-only tasks (never benchmarked): the level of an event's numeric column in
/// the next window among entities with such events — its mean (regression), and whether
/// its maximum is high or its minimum low (binary). Unlike the benchmark's count tasks,
/// which all rise with activity, half of these are positive for *low* values, so a model
/// pretrained on them must read which way a column points from the examples.
pub fn value_tasks(db: &Database, plan: &Plan) -> Vec<TaskDef> {
    let b = Builder::new(db, plan);
    let d = plan.domain;
    let e = &plan.entity;
    let ent = (e.table.as_str(), e.key.as_str());
    let who = super::vocab::singular(&e.table);
    let for_each = format!("FOR EACH {}.{}", e.table, e.key);
    let w = window(db, plan);
    let opts = b.options(w);
    let mut out = Vec::new();
    let o = &plan.order;
    let mut facts = vec![(
        o.table.clone(),
        d.order.col,
        vec![format!("{}.{}", o.table, e.key)],
    )];
    if let Some(s) = &plan.session {
        facts.push((s.table.clone(), d.session.col, Vec::new()));
    }
    for (table, col, via) in facts {
        let arg = b.arg(&table, &via, ent);
        let v = via_of(&arg);
        let seen = format!("ASSUMING COUNT({arg}, 0, {w}, days) > 0");
        let name = |what: &str| format!("{who}-{}-{what}", col.replace('_', "-"));
        out.extend(b.task(
            &name("mean"),
            format!("PREDICT AVG({table}.{col}{v}, 0, {w}, days) {for_each} {seen}"),
            opts.clone(),
            "mean of an event's value in the next window".into(),
        ));
        for (agg, cmp, q) in [("MAX", ">", 0.6), ("MIN", "<=", 0.4)] {
            let probe = format!("PREDICT {agg}({table}.{col}{v}, 0, {w}, days) {for_each} {seen}");
            let vals = b.train_values(&probe, &opts);
            if vals.is_empty() {
                continue;
            }
            let t = quantile(&vals, q);
            out.extend(b.task(
                &name(&agg.to_lowercase()),
                format!(
                    "PREDICT {agg}({table}.{col}{v}, 0, {w}, days) {cmp} {t} {for_each} {seen}"
                ),
                opts.clone(),
                format!("{agg} of an event's value in the next window {cmp} {t}"),
            ));
        }
    }
    out
}
