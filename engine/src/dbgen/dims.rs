//! Static tables and the entity table: geography (country ← region), branches and staff
//! (self-referencing managers), categories, brands, items, groups, the entity with its
//! observable attributes and its target column, and a wide one-to-one profile.

use super::db::{Cell, ColType, ForeignKey, Role, Strings, Table};
use super::latent::World;
use super::noise::add_noise_columns;
use super::plan::{Named, Plan};
use super::rng::Rng;
use super::vocab;
use super::DAY;

/// Tables built so far and what later tables need to reference them.
pub struct Ctx<'a> {
    pub plan: &'a Plan,
    pub world: &'a World,
    pub rng: Rng,
    pub noise_rng: Rng,
    pub strings: Strings,
    pub tables: Vec<Table>,
    pub fks: Vec<ForeignKey>,
    pub entity_keys: Vec<Cell>,
    pub item_keys: Vec<Cell>,
}

impl Ctx<'_> {
    pub fn fk(&mut self, table: &str, cols: &[&str], ref_table: &str, ref_cols: &[&str]) {
        self.fks.push(ForeignKey {
            name: format!("{table}_{}_fkey", cols.join("_")),
            table: table.into(),
            columns: cols.iter().map(|c| c.to_string()).collect(),
            ref_table: ref_table.into(),
            ref_columns: ref_cols.iter().map(|c| c.to_string()).collect(),
        });
    }

    /// Adds the table's noise columns and keeps it.
    pub fn finish(&mut self, mut t: Table, named: Option<&Named>) {
        if let Some(n) = named {
            add_noise_columns(&mut self.noise_rng, &mut t, n.noise_cols, &mut self.strings);
        }
        self.tables.push(t);
    }

    pub fn texts(&mut self, values: impl IntoIterator<Item = String>) -> Vec<Cell> {
        values.into_iter().map(|v| self.strings.cell(&v)).collect()
    }
}

/// A time cell of type `ty`: dates keep the day only.
pub fn tcell(ty: ColType, us: i64) -> Cell {
    if ty == ColType::Date {
        Cell::Time(us.div_euclid(DAY) * DAY)
    } else {
        Cell::Time(us)
    }
}

pub fn ints(range: impl Iterator<Item = usize>, offset: i64) -> Vec<Cell> {
    range.map(|i| Cell::Int(i as i64 + offset)).collect()
}

fn opt_key(keys: &[Cell], i: Option<usize>) -> Cell {
    i.map_or(Cell::Null, |k| keys[k])
}

/// Geography, branches, staff, categories, brands, items and groups.
pub fn dimensions(cx: &mut Ctx) {
    let (p, w) = (cx.plan, cx.world);
    if let Some(c) = &p.country {
        let mut t = Table::new(&c.table, Role::Dimension);
        let n = w.countries.len();
        let names = vocab::countries().values;
        let names = cx.texts((0..n).map(|i| names[i % names.len()].to_string()));
        let income = w
            .countries
            .iter()
            .map(|z| Cell::Float(((30.0 + 12.0 * z) * 10.0).round() / 10.0))
            .collect();
        t.add(&c.key, ColType::Int, ints(0..n, 1))
            .add("name", ColType::Text, names)
            .add(vocab::countries().col, ColType::Float, income);
        t.primary_key = vec![c.key.clone()];
        cx.finish(t, Some(c));
    }
    if let Some(r) = &p.region {
        let mut t = Table::new(&r.table, Role::Dimension);
        let n = w.regions.len();
        let rv = vocab::regions().values;
        let names = cx.texts((0..n).map(|i| format!("{}_{}", rv[i % rv.len()], i / rv.len() + 1)));
        let tiers = cx.texts(
            w.regions
                .iter()
                .map(|x| ["A", "B", "C"][x.tier].to_string()),
        );
        t.add(&r.key, ColType::Int, ints(0..n, 1))
            .add("name", ColType::Text, names)
            .add(vocab::regions().col, ColType::Text, tiers);
        if let Some(c) = &p.country {
            t.add(
                &c.key,
                ColType::Int,
                w.regions
                    .iter()
                    .map(|x| Cell::Int(x.country as i64 + 1))
                    .collect(),
            );
            cx.fk(&r.table, &[&c.key], &c.table, &[&c.key]);
        }
        t.primary_key = vec![r.key.clone()];
        cx.finish(t, Some(r));
    }
    if let (Some(s), Some(b)) = (&p.staff, &p.branch) {
        let mut t = Table::new(&b.table, Role::Dimension);
        let names = cx.texts(
            (0..w.n_branches)
                .map(|i| format!("{}_{}", vocab::CITIES[i % vocab::CITIES.len()], b.table)),
        );
        t.add(&b.key, ColType::Int, ints(0..w.n_branches, 1))
            .add("name", ColType::Text, names);
        t.primary_key = vec![b.key.clone()];
        cx.finish(t, Some(b));
        staff(cx, s, b);
    }
    if let (Some(it), Some(c)) = (&p.items, &p.category) {
        let d = p.domain;
        let mut t = Table::new(&c.table, Role::Dimension);
        let names = cx.texts((0..w.n_categories).map(|i| d.category.values[i].to_string()));
        t.add(&c.key, ColType::Int, ints(0..w.n_categories, 1))
            .add("name", ColType::Text, names);
        t.primary_key = vec![c.key.clone()];
        cx.finish(t, Some(c));
        if let Some(b) = &p.brand {
            let mut t = Table::new(&b.table, Role::Dimension);
            let n = w.brands.len();
            let bv = d.brand.values;
            let names = cx.texts((0..n).map(|i| {
                format!(
                    "{}{}",
                    bv[i % bv.len()],
                    if i < bv.len() {
                        String::new()
                    } else {
                        (i / bv.len() + 1).to_string()
                    }
                )
            }));
            let rating = w
                .brands
                .iter()
                .map(|q| Cell::Float(((3.5 + 0.6 * q).clamp(1.0, 5.0) * 10.0).round() / 10.0))
                .collect();
            t.add(&b.key, ColType::Int, ints(0..n, 1))
                .add("name", ColType::Text, names)
                .add("quality_rating", ColType::Float, rating);
            t.primary_key = vec![b.key.clone()];
            cx.finish(t, Some(b));
        }
        items(cx, it, c);
    }
    if let Some(g) = &p.group {
        let d = p.domain;
        let mut t = Table::new(&g.table, Role::Dimension);
        let n = w.groups.len();
        let names = cx.texts((0..n).map(|i| format!("{}_{}", d.group.values[w.groups[i]], i + 1)));
        let kinds = cx.texts(w.groups.iter().map(|&k| d.group.values[k].to_string()));
        t.add(&g.key, ColType::Int, ints(0..n, 1))
            .add("name", ColType::Text, names)
            .add(d.group.col, ColType::Text, kinds);
        t.primary_key = vec![g.key.clone()];
        cx.finish(t, Some(g));
    }
}

fn staff(cx: &mut Ctx, s: &Named, b: &Named) {
    let w = cx.world;
    let d = cx.plan.domain;
    let mut t = Table::new(&s.table, Role::Dimension);
    let n = w.staff.len();
    let titles = cx.texts(w.staff.iter().map(|x| {
        let k = ((x.skill + 1.5) / 1.0).clamp(0.0, 3.0) as usize;
        d.staff.values[k].to_string()
    }));
    let manager = w
        .staff
        .iter()
        .map(|x| x.manager.map_or(Cell::Null, |m| Cell::Int(m as i64 + 1)))
        .collect();
    // The observable side of skill: a review score.
    let score = w
        .staff
        .iter()
        .map(|x| Cell::Float(((3.0 + 0.5 * x.skill).clamp(1.0, 5.0) * 100.0).round() / 100.0))
        .collect();
    t.add(&s.key, ColType::Int, ints(0..n, 1))
        .add(
            &b.key,
            ColType::Int,
            w.staff
                .iter()
                .map(|x| Cell::Int(x.branch as i64 + 1))
                .collect(),
        )
        .add("manager_id", ColType::Int, manager)
        .add(d.staff.col, ColType::Text, titles)
        .add("review_score", ColType::Float, score);
    t.primary_key = vec![s.key.clone()];
    cx.fk(&s.table, &[&b.key], &b.table, &[&b.key]);
    cx.fk(&s.table, &["manager_id"], &s.table, &[&s.key]);
    cx.finish(t, Some(s));
}

fn items(cx: &mut Ctx, it: &Named, c: &Named) {
    let p = cx.plan;
    let w = cx.world;
    let d = p.domain;
    let mut t = Table::new(&it.table, Role::Dimension);
    let n = w.items.len();
    cx.item_keys = if p.item_text_key {
        cx.texts((0..n).map(|i| format!("{}-{:05}", d.item_prefix, 10_007 * (i + 1) % 99_991)))
    } else {
        ints(0..n, 1)
    };
    let names = cx.texts(w.items.iter().enumerate().map(|(i, x)| {
        format!(
            "{} {}",
            d.item.values[(i + x.category) % d.item.values.len()],
            i + 1
        )
    }));
    let ty = if p.item_text_key {
        ColType::Text
    } else {
        ColType::Int
    };
    t.add(&it.key, ty, cx.item_keys.clone())
        .add("name", ColType::Text, names)
        .add(
            &c.key,
            ColType::Int,
            w.items
                .iter()
                .map(|x| Cell::Int(x.category as i64 + 1))
                .collect(),
        );
    cx.fk(&it.table, &[&c.key], &c.table, &[&c.key]);
    if let Some(b) = &p.brand {
        t.add(
            &b.key,
            ColType::Int,
            w.items
                .iter()
                .map(|x| Cell::Int(x.brand as i64 + 1))
                .collect(),
        );
        cx.fk(&it.table, &[&b.key], &b.table, &[&b.key]);
    }
    t.add(
        d.item.col,
        ColType::Money,
        w.items.iter().map(|x| Cell::Float(x.price)).collect(),
    );
    if p.items_timed {
        t.add(
            "created_at",
            ColType::Timestamp,
            w.items.iter().map(|x| Cell::Time(x.launch)).collect(),
        );
        t.time_column = Some("created_at".into());
    }
    t.primary_key = vec![it.key.clone()];
    cx.finish(t, Some(it));
}

/// The entity table: key, sign-up time, segment, parents, the target column, noise.
pub fn entity(cx: &mut Ctx) {
    let p = cx.plan;
    let w = cx.world;
    let d = p.domain;
    let e = &p.entity;
    let n = w.entities.len();
    let mut t = Table::new(&e.table, Role::Entity);
    let offset = cx.rng.int(0, 5) * 1000 + 1;
    cx.entity_keys = if p.entity_text_key {
        cx.texts((0..n).map(|i| format!("{}-{:06}", d.entity_prefix, i as i64 + offset)))
    } else {
        ints(0..n, offset)
    };
    let ty = if p.entity_text_key {
        ColType::Text
    } else {
        ColType::Int
    };
    t.add(&e.key, ty, cx.entity_keys.clone());
    if p.entity_timed {
        t.add(
            &e.time,
            e.time_type,
            w.entities
                .iter()
                .map(|x| tcell(e.time_type, x.signup))
                .collect(),
        );
        t.time_column = Some(e.time.clone());
    }
    let seg = cx.texts(
        w.entities
            .iter()
            .map(|x| d.entity.values[x.segment].to_string()),
    );
    t.add(&p.segment_col, ColType::Text, seg);
    if let Some(r) = &p.region {
        t.add(
            &r.key,
            ColType::Int,
            w.entities
                .iter()
                .map(|x| x.region.map_or(Cell::Null, |r| Cell::Int(r as i64 + 1)))
                .collect(),
        );
        cx.fk(&e.table, &[&r.key], &r.table, &[&r.key]);
    }
    if let Some(s) = &p.staff {
        t.add(
            &s.key,
            ColType::Int,
            w.entities
                .iter()
                .map(|x| x.staff.map_or(Cell::Null, |k| Cell::Int(k as i64 + 1)))
                .collect(),
        );
        cx.fk(&e.table, &[&s.key], &s.table, &[&s.key]);
    }
    if let Some(col) = &p.referral {
        let keys = cx.entity_keys.clone();
        t.add(
            col,
            ty,
            w.entities
                .iter()
                .map(|x| opt_key(&keys, x.referrer))
                .collect(),
        );
        cx.fk(&e.table, &[col], &e.table, &[&e.key]);
    }
    let tiers = cx.texts(w.entities.iter().map(|x| d.tier.values[x.tier].to_string()));
    t.add(&p.tier_col, ColType::Text, tiers);
    for nt in p
        .noise
        .iter()
        .filter(|x| x.kind == super::plan::NoiseKind::EntityLookup)
    {
        let col = nt.named.key.clone();
        let data = (0..n)
            .map(|_| {
                if cx.rng.bool(0.1) {
                    Cell::Null
                } else {
                    Cell::Int(cx.rng.int(1, nt.rows as i64 + 1))
                }
            })
            .collect();
        t.add(&col, ColType::Int, data);
        cx.fk(&e.table, &[&col], &nt.named.table, &[&col]);
    }
    t.primary_key = vec![e.key.clone()];
    cx.finish(t, Some(e));
    if let Some(pr) = &p.profile {
        profile(cx, pr);
    }
}

/// One row per entity, wide: two weakly informative columns among many noise ones.
fn profile(cx: &mut Ctx, pr: &Named) {
    let p = cx.plan;
    let w = cx.world;
    let e = &p.entity;
    let mut t = Table::new(&pr.table, Role::Dimension);
    let ty = if p.entity_text_key {
        ColType::Text
    } else {
        ColType::Int
    };
    t.add(&e.key, ty, cx.entity_keys.clone());
    let bands = ["low", "lower_middle", "middle", "upper_middle", "high"];
    let band: Vec<String> = w
        .entities
        .iter()
        .map(|x| {
            let z = x.val + 0.6 * cx.rng.normal();
            bands[((z + 0.75) / 0.5).clamp(0.0, 4.0) as usize].to_string()
        })
        .collect();
    let band = cx.texts(band);
    let age = w
        .entities
        .iter()
        .map(|x| {
            let a = 38.0 + 6.0 * x.val + 11.0 * cx.rng.normal();
            if cx.rng.bool(0.15) {
                Cell::Null
            } else {
                Cell::Int(a.clamp(18.0, 90.0) as i64)
            }
        })
        .collect();
    t.add("income_band", ColType::Text, band)
        .add("age", ColType::Int, age);
    t.primary_key = vec![e.key.clone()];
    cx.fk(&pr.table, &[&e.key], &e.table, &[&e.key]);
    cx.finish(t, Some(pr));
}
