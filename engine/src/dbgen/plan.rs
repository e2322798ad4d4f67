//! The blueprint of one database, drawn from the seed: which building blocks it has (a
//! geography chain, items and order lines, follow-ups, sessions, tickets, groups, staff,
//! yearly summaries, a wide profile, noise tables), their names, key and time types and
//! sizes. Everything structural is decided here, before any row exists.

use super::db::ColType;
use super::rng::Rng;
use super::vocab::{self, singular, Domain, DOMAINS};
use super::{DbConfig, DAY};

/// A table's name and the column names that depend on it.
#[derive(Debug, Clone)]
pub struct Named {
    pub table: String,
    /// Primary key column (`customer_id`).
    pub key: String,
    /// Time column (`created_at`), for timed tables.
    pub time: String,
    pub time_type: ColType,
    /// Extra noise columns.
    pub noise_cols: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseKind {
    /// A static lookup the entity references (entity.language_id → languages).
    EntityLookup,
    /// A static table linked to nothing.
    Isolated,
    /// A timed log about entities without any signal.
    EntityLog,
    /// A timed log linked to nothing (rates, calendars).
    TimedIsolated,
}

#[derive(Debug, Clone)]
pub struct NoiseTable {
    pub named: Named,
    pub kind: NoiseKind,
    pub rows: usize,
}

pub struct Plan {
    pub domain: &'static Domain,
    pub start: i64,
    pub days: i64,
    pub n_entities: usize,
    pub n_items: usize,
    pub n_staff: usize,
    pub n_groups: usize,
    /// Expected events per table, to set base rates.
    pub target_orders: f64,
    pub target_sessions: f64,
    pub target_tickets: f64,

    pub entity: Named,
    pub entity_timed: bool,
    pub entity_text_key: bool,
    /// Extra noise columns that make the entity table wide (0 or 20..60).
    pub segment_col: String,
    pub tier_col: String,
    pub referral: Option<String>,
    pub region: Option<Named>,
    pub country: Option<Named>,
    pub order: Named,
    /// A second foreign key from orders to the entity (gift recipient): makes paths ambiguous.
    pub recipient_col: Option<String>,
    pub items: Option<Named>,
    pub item_text_key: bool,
    pub items_timed: bool,
    pub category: Option<Named>,
    pub brand: Option<Named>,
    pub lines: Option<Named>,
    pub followup: Option<Named>,
    pub session: Option<Named>,
    pub ticket: Option<Named>,
    pub group: Option<Named>,
    pub link: Option<Named>,
    pub staff: Option<Named>,
    pub branch: Option<Named>,
    pub periodic: Option<Named>,
    pub periodic_detail: Option<Named>,
    pub profile: Option<Named>,
    pub noise: Vec<NoiseTable>,
}

/// Time column names by the kind of moment they stamp; `date` types get day-ish names.
fn time_name(rng: &mut Rng, ty: ColType, stamp: &[&'static str], day: &[&'static str]) -> String {
    if ty == ColType::Date {
        rng.pick(day).to_string()
    } else {
        rng.pick(stamp).to_string()
    }
}

fn time_type(rng: &mut Rng, p_date: f64) -> ColType {
    let x = rng.f64();
    if x < p_date {
        ColType::Date
    } else if x < p_date + 0.15 {
        ColType::Timestamptz
    } else {
        ColType::Timestamp
    }
}

struct Namer<'a> {
    rng: &'a mut Rng,
    used: Vec<String>,
    noise_cols: f64,
}

impl Namer<'_> {
    /// A table named from `choices` not used yet (a numbered variant if all are).
    fn table(&mut self, choices: &[&str]) -> String {
        let free: Vec<&str> = choices
            .iter()
            .copied()
            .filter(|c| !self.used.iter().any(|u| u == c))
            .collect();
        let name = if free.is_empty() {
            format!("{}_{}", choices[0], self.used.len())
        } else {
            self.rng.pick(&free).to_string()
        };
        self.used.push(name.clone());
        name
    }

    fn named(&mut self, choices: &[&str], time: String, time_type: ColType) -> Named {
        let table = self.table(choices);
        let noise_cols = self.rng.poisson(self.noise_cols) as usize;
        Named {
            key: format!("{}_id", singular(&table)),
            table,
            time,
            time_type,
            noise_cols,
        }
    }

    fn timed(
        &mut self,
        choices: &[&str],
        p_date: f64,
        stamp: &[&'static str],
        day: &[&'static str],
    ) -> Named {
        let ty = time_type(self.rng, p_date);
        let t = time_name(self.rng, ty, stamp, day);
        self.named(choices, t, ty)
    }

    fn fixed(&mut self, choices: &[&str]) -> Named {
        self.named(choices, String::new(), ColType::Timestamp)
    }
}

const EVENT_TS: &[&str] = &["created_at", "event_time", "occurred_at", "ts", "timestamp"];
const EVENT_DAY: &[&str] = &["date", "event_date", "created_on"];

/// Draws the blueprint of database `seed`.
pub fn plan(seed: u64, cfg: &DbConfig) -> Plan {
    let mut rng = Rng::new(seed, "plan");
    let domain = &DOMAINS[rng.index(DOMAINS.len())];
    // How many optional blocks: from a bare two-table database to thirty tables.
    let c = cfg.complexity.unwrap_or_else(|| rng.f64());
    let total = cfg.scale.rows() as f64;
    let days = rng.int(540, 1461);
    let start_day = crate::base::time::days_from_civil(rng.int(2012, 2022), 1, 1) + rng.int(0, 300);
    let n_entities = ((total / rng.uniform(22.0, 45.0)) as usize).clamp(150, 60_000);
    let mut nm = Namer {
        rng: &mut rng,
        used: Vec::new(),
        noise_cols: 1.0 + 2.0 * c,
    };
    let p = |x: f64| x.clamp(0.0, 1.0);

    let (entity, entity_timed, entity_text_key, referral) = entity_block(&mut nm, domain, c);

    let region = nm
        .rng
        .bool(p(1.2 * c))
        .then(|| nm.fixed(vocab::regions().tables));
    let country =
        (region.is_some() && nm.rng.bool(p(0.8 * c))).then(|| nm.fixed(vocab::countries().tables));

    let order = nm.timed(
        domain.order.tables,
        0.15,
        &["created_at", "placed_at", "occurred_at", "event_time", "ts"],
        EVENT_DAY,
    );
    let recipient_col = nm.rng.bool(p(0.3 * c)).then(|| {
        nm.rng
            .pick(&["recipient_id", "beneficiary_id", "gift_for_id"])
            .to_string()
    });

    let items_on = nm.rng.bool(p(1.2 * c));
    let items = items_on.then(|| nm.fixed(domain.item.tables));
    let items_timed = items_on && nm.rng.bool(0.5);
    let item_text_key = nm.rng.bool(0.5);
    let category = items_on.then(|| nm.fixed(domain.category.tables));
    let brand = (items_on && nm.rng.bool(p(0.6 * c))).then(|| nm.fixed(domain.brand.tables));
    let lines = (items_on && nm.rng.bool(0.65)).then(|| {
        let mut l = nm.fixed(domain.line.tables);
        (l.time, l.time_type) = (order.time.clone(), order.time_type);
        l
    });
    let followup = (lines.is_some() && nm.rng.bool(p(0.9 * c)))
        .then(|| nm.timed(domain.followup.tables, 0.2, EVENT_TS, EVENT_DAY));
    let ex = extras(&mut nm, domain, c);
    let profile = nm.rng.bool(p(0.4 * c)).then(|| {
        let mut n = nm.fixed(&[&format!("{}_profiles", singular(&entity.table))]);
        n.noise_cols += nm.rng.int(20, 58) as usize;
        n
    });

    let noise = noise_tables(&mut nm, domain, c, total);

    // Where the rows go: the main events get the largest share.
    let events = total - n_entities as f64;
    let lines_per_order = if lines.is_some() { 2.3 } else { 0.0 };
    let w_session = if ex.session.is_some() { 0.8 } else { 0.0 };
    let w_ticket = if ex.ticket.is_some() { 0.08 } else { 0.0 };
    let per_order = 1.0 + lines_per_order + w_session + w_ticket;
    let target_orders = (events * 0.85 / per_order).max(200.0);
    let n_items = if items_on {
        ((n_entities as f64 / rng.uniform(3.0, 12.0)) as usize).clamp(30, 5000)
    } else {
        0
    };
    Plan {
        domain,
        start: start_day * DAY,
        days,
        n_entities,
        n_items,
        n_staff: if ex.staff.is_some() {
            n_entities / 60 + 4
        } else {
            0
        },
        n_groups: if ex.group.is_some() {
            rng.int(4, 25) as usize
        } else {
            0
        },
        target_orders,
        target_sessions: target_orders * w_session,
        target_tickets: target_orders * w_ticket,
        segment_col: domain.entity.col.to_string(),
        tier_col: domain.tier.col.to_string(),
        entity,
        entity_timed,
        entity_text_key,
        referral,
        region,
        country,
        order,
        recipient_col,
        items,
        item_text_key,
        items_timed,
        category,
        brand,
        lines,
        followup,
        session: ex.session,
        ticket: ex.ticket,
        group: ex.group,
        link: ex.link,
        staff: ex.staff,
        branch: ex.branch,
        periodic: ex.periodic,
        periodic_detail: ex.periodic_detail,
        profile,
        noise,
    }
}

/// The entity table: timed or static, wide or not, int or text key, maybe self-referencing.
fn entity_block(nm: &mut Namer, domain: &Domain, c: f64) -> (Named, bool, bool, Option<String>) {
    let p = |x: f64| x.clamp(0.0, 1.0);
    let entity_timed = nm.rng.bool(0.75);
    let mut entity = nm.fixed(domain.entity.tables);
    if entity_timed {
        entity.time_type = if nm.rng.bool(0.3) {
            ColType::Date
        } else {
            ColType::Timestamp
        };
        entity.time = time_name(
            nm.rng,
            entity.time_type,
            &["created_at", "registered_at", "signup_time"],
            &["signup_date", "joined_on", "registration_date"],
        );
    }
    if nm.rng.bool(p(0.5 * c)) {
        entity.noise_cols += nm.rng.int(20, 58) as usize;
    }
    let entity_text_key = nm.rng.bool(0.4);
    let referral = nm.rng.bool(p(0.5 * c)).then(|| {
        nm.rng
            .pick(&["referred_by", "referrer_id", "parent_account_id"])
            .to_string()
    });

    (entity, entity_timed, entity_text_key, referral)
}

/// Optional tables hanging off the entity.
struct Extras {
    session: Option<Named>,
    ticket: Option<Named>,
    group: Option<Named>,
    link: Option<Named>,
    staff: Option<Named>,
    branch: Option<Named>,
    periodic: Option<Named>,
    periodic_detail: Option<Named>,
}

fn extras(nm: &mut Namer, domain: &Domain, c: f64) -> Extras {
    let p = |x: f64| x.clamp(0.0, 1.0);
    let session = nm.rng.bool(p(1.0 * c)).then(|| {
        nm.timed(
            domain.session.tables,
            0.0,
            &["started_at", "created_at", "ts", "event_time"],
            EVENT_DAY,
        )
    });
    let ticket = nm.rng.bool(p(0.9 * c)).then(|| {
        nm.timed(
            domain.ticket.tables,
            0.1,
            &["opened_at", "created_at", "reported_at"],
            EVENT_DAY,
        )
    });
    let group_on = nm.rng.bool(p(0.7 * c));
    let group = group_on.then(|| nm.fixed(domain.group.tables));
    let link = group_on.then(|| {
        nm.timed(
            domain.link.tables,
            0.3,
            &["joined_at", "created_at", "enrolled_at"],
            &["joined_on", "start_date"],
        )
    });
    let staff_on = nm.rng.bool(p(0.6 * c));
    let staff = staff_on.then(|| nm.fixed(domain.staff.tables));
    let branch = staff_on.then(|| nm.fixed(domain.branch.tables));
    let periodic_on = nm.rng.bool(p(0.5 * c));
    let periodic = periodic_on.then(|| {
        let mut n = nm.fixed(domain.periodic.tables);
        (n.time, n.time_type) = ("reported_on".into(), ColType::Date);
        n
    });
    let periodic_detail = (periodic_on && nm.rng.bool(0.5)).then(|| {
        let mut n = nm.fixed(domain.periodic_detail.tables);
        (n.time, n.time_type) = ("reported_on".into(), ColType::Date);
        n
    });
    Extras {
        session,
        ticket,
        group,
        link,
        staff,
        branch,
        periodic,
        periodic_detail,
    }
}

/// Tables without signal: lookups, isolated dimensions and logs.
fn noise_tables(nm: &mut Namer, domain: &Domain, c: f64, total: f64) -> Vec<NoiseTable> {
    let mut noise = Vec::new();
    let n_noise = (c * nm.rng.uniform(0.0, 12.99)) as usize;
    for _ in 0..n_noise {
        let kind = *nm.rng.pick(&[
            NoiseKind::EntityLookup,
            NoiseKind::Isolated,
            NoiseKind::EntityLog,
            NoiseKind::TimedIsolated,
        ]);
        let named = match kind {
            NoiseKind::EntityLog | NoiseKind::TimedIsolated => {
                nm.timed(domain.noise_tables, 0.3, EVENT_TS, EVENT_DAY)
            }
            _ => nm.fixed(domain.noise_tables),
        };
        let rows = match kind {
            NoiseKind::EntityLookup | NoiseKind::Isolated => nm.rng.int(5, 300) as usize,
            NoiseKind::EntityLog => (total * nm.rng.uniform(0.01, 0.06)) as usize,
            NoiseKind::TimedIsolated => nm.rng.int(50, 2000) as usize,
        };
        noise.push(NoiseTable { named, kind, rows });
    }

    noise
}
