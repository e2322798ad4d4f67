//! The static world behind the data: dimension rows (regions, countries, categories,
//! brands, items, staff, groups) and every entity's **latent traits** — activity, value,
//! trend, frailty, taste — which drive its past and its future alike. Some traits show in
//! observable columns (segment, a region's market tier, a country's income, a staff
//! member's skill); the rest must be inferred from behaviour. `signal` scales how much
//! entities differ; `noise` how much the multiclass target strays from the traits.

use super::plan::Plan;
use super::rng::Rng;
use super::{DbConfig, DAY};

pub struct Region {
    pub country: usize,
    /// Market tier 0..3 ('A', 'B', 'C'): shifts activity.
    pub tier: usize,
}

pub struct Item {
    pub category: usize,
    pub brand: usize,
    pub price: f64,
    /// Chance-raising quality problem: more follow-ups (returns, complaints).
    pub defect: f64,
    pub launch: i64,
}

pub struct Staff {
    pub manager: Option<usize>,
    pub branch: usize,
    /// Observable skill (z-score): good staff keep their entities active.
    pub skill: f64,
}

pub struct Entity {
    pub signup: i64,
    pub segment: usize,
    pub region: Option<usize>,
    pub staff: Option<usize>,
    pub referrer: Option<usize>,
    /// Multiclass target (0 = least engaged).
    pub tier: usize,
    /// Log activity multiplier (observable effects included).
    pub act: f64,
    /// Log spend level.
    pub val: f64,
    /// Change of log activity per year.
    pub trend: f64,
    /// Log churn hazard multiplier.
    pub frail: f64,
    /// Log preference per item category.
    pub taste: Vec<f64>,
}

pub struct World {
    pub regions: Vec<Region>,
    /// Income level per country (z-score): raises spend.
    pub countries: Vec<f64>,
    pub n_categories: usize,
    /// Day of year each category peaks.
    pub category_peak: Vec<f64>,
    /// Brand quality (z-score): lowers defects.
    pub brands: Vec<f64>,
    pub items: Vec<Item>,
    /// Item indices per category and their cumulative popularity.
    pub by_category: Vec<(Vec<usize>, Vec<f64>)>,
    pub n_branches: usize,
    pub staff: Vec<Staff>,
    /// Kind index per group (kind 0 raises activity most).
    pub groups: Vec<usize>,
    pub entities: Vec<Entity>,
}

fn z(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.normal()).collect()
}

/// Draws the dimension rows and the entities for `plan`.
pub fn world(seed: u64, plan: &Plan, cfg: &DbConfig) -> World {
    let mut rng = Rng::new(seed, "world");
    let d = plan.domain;
    let s = cfg.signal;
    let n_countries = if plan.country.is_some() {
        rng.int(3, 9) as usize
    } else {
        1
    };
    let countries = z(&mut rng, n_countries);
    let n_regions = if plan.region.is_some() {
        rng.int(4, 13) as usize
    } else {
        0
    };
    let regions: Vec<Region> = (0..n_regions)
        .map(|_| Region {
            country: rng.index(n_countries),
            tier: rng.index(3),
        })
        .collect();
    let n_categories = if plan.items.is_some() {
        rng.int(4, d.category.values.len() as i64 + 1) as usize
    } else {
        0
    };
    let category_peak: Vec<f64> = (0..n_categories).map(|_| rng.uniform(0.0, 365.0)).collect();
    let n_brands = if plan.brand.is_some() {
        rng.int(3, 10) as usize
    } else {
        1
    };
    let brands = z(&mut rng, n_brands);
    let mut items = items(&mut rng, plan, n_categories, &brands);
    let mut by_category: Vec<(Vec<usize>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); n_categories];
    let pop = super::rng::zipf(items.len(), 0.9);
    let mut order: Vec<usize> = (0..items.len()).collect();
    rng.shuffle(&mut order);
    for (rank, &i) in order.iter().enumerate() {
        let (ids, cum) = &mut by_category[items[i].category];
        ids.push(i);
        cum.push(cum.last().copied().unwrap_or(0.0) + pop[rank]);
    }
    // The most popular item of each category is on sale from the start: a fallback
    // that is always available.
    for (ids, _) in &by_category {
        if let Some(&first) = ids.first() {
            items[first].launch = plan.start;
        }
    }
    let n_branches = if plan.staff.is_some() {
        rng.int(2, 9) as usize
    } else {
        0
    };
    let staff: Vec<Staff> = (0..plan.n_staff)
        .map(|i| Staff {
            manager: (i > 0 && rng.bool(0.85)).then(|| rng.index(i.min(1 + i / 3))),
            branch: rng.index(n_branches.max(1)),
            skill: rng.normal(),
        })
        .collect();
    let groups: Vec<usize> = (0..plan.n_groups)
        .map(|_| rng.index(d.group.values.len()))
        .collect();
    let n_segments = d.entity.values.len();
    let entities = entities(
        &mut rng,
        plan,
        s,
        cfg.noise,
        n_segments,
        &regions,
        &countries,
        &staff,
        n_categories,
    );
    World {
        regions,
        countries,
        n_categories,
        category_peak,
        brands,
        items,
        by_category,
        n_branches,
        staff,
        groups,
        entities,
    }
}

fn items(rng: &mut Rng, plan: &Plan, n_categories: usize, brands: &[f64]) -> Vec<Item> {
    let end = plan.start + plan.days * DAY;
    (0..plan.n_items)
        .map(|_| {
            let brand = rng.index(brands.len());
            let launch = if plan.items_timed && rng.bool(0.3) {
                plan.start + rng.int(30, plan.days - 30) * DAY + rng.int(0, 86_400) * 1_000_000
            } else {
                plan.start
            };
            debug_assert!(launch < end);
            Item {
                category: rng.index(n_categories.max(1)),
                brand,
                price: (rng.lognormal(3.0, 0.9) * 100.0).round() / 100.0 + 0.99,
                defect: 0.8 * rng.normal() - 0.5 * brands[brand],
                launch,
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn entities(
    rng: &mut Rng,
    plan: &Plan,
    s: f64,
    noise: f64,
    n_segments: usize,
    regions: &[Region],
    countries: &[f64],
    staff: &[Staff],
    n_categories: usize,
) -> Vec<Entity> {
    // Observable effects: per segment, per market tier, and their interaction.
    let seg_act = z(rng, n_segments);
    let seg_val = z(rng, n_segments);
    let tier_act = [0.35, 0.0, -0.35];
    let inter: Vec<f64> = (0..n_segments * 3).map(|_| 0.3 * rng.normal()).collect();
    let last_signup = plan.days - 60;
    let mut signups: Vec<i64> = (0..plan.n_entities)
        .map(|_| {
            let day = if rng.bool(0.4) {
                rng.int(0, 30)
            } else {
                rng.int(0, last_signup)
            };
            plan.start + day * DAY + rng.int(0, 86_400) * 1_000_000
        })
        .collect();
    // Keys follow sign-up order, as an auto-increment would.
    signups.sort_unstable();
    let mut out: Vec<Entity> = Vec::with_capacity(plan.n_entities);
    for (i, &signup) in signups.iter().enumerate() {
        let segment = rng.index(n_segments);
        let region = (!regions.is_empty()).then(|| rng.index(regions.len()));
        let st = (!staff.is_empty()).then(|| rng.index(staff.len()));
        let referrer = (plan.referral.is_some() && i > 10 && rng.bool(0.3)).then(|| rng.index(i));
        let (tier, income) = match region {
            Some(r) => (regions[r].tier, countries[regions[r].country]),
            None => (1, 0.0),
        };
        let skill = st.map_or(0.0, |k| staff[k].skill);
        let latent_act =
            0.7 * rng.normal() + referrer.map_or(0.0, |r: usize| 0.5 * out[r].act.clamp(-2.0, 2.0));
        let act = s
            * (latent_act
                + 0.45 * seg_act[segment]
                + tier_act[tier]
                + inter[segment * 3 + tier]
                + 0.25 * skill);
        let val = s * (0.5 * rng.normal() + 0.3 * seg_val[segment] + 0.25 * income);
        let trend = s * 0.4 * rng.normal();
        let frail = s * (0.6 * rng.normal() - 0.3 * skill);
        let taste = (0..n_categories).map(|_| 1.3 * s * rng.normal()).collect();
        out.push(Entity {
            signup,
            segment,
            region,
            staff: st,
            referrer,
            tier: 0,
            act,
            val,
            trend,
            frail,
            taste,
        });
    }
    assign_tiers(rng, &mut out, noise);
    out
}

/// The multiclass target: a noisy score of the spend, activity and trend traits cut at
/// fixed population shares (40 / 30 / 20 / 10 %).
fn assign_tiers(rng: &mut Rng, es: &mut [Entity], noise: f64) {
    let scores: Vec<f64> = es
        .iter()
        .map(|e| {
            1.2 * e.val + 0.6 * e.act + 0.4 * e.trend - 0.3 * e.frail + 0.35 * noise * rng.normal()
        })
        .collect();
    let mut sorted = scores.clone();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)];
    let cuts = [q(0.4), q(0.7), q(0.9)];
    for (e, sc) in es.iter_mut().zip(scores) {
        e.tier = cuts.iter().filter(|&&c| sc >= c).count();
    }
}
