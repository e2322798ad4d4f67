//! Timed tables from the simulated events: orders → lines → follow-ups (the deep chain),
//! sessions, tickets, the many-to-many link, yearly summaries with a composite key and
//! their detail rows (composite foreign key), and the noise tables.

use super::db::{Cell, ColType, Role, Table};
use super::dims::{ints, tcell, Ctx};
use super::plan::{Named, NoiseKind};
use super::simulate::Events;
use super::DAY;

fn ids(n: usize, offset: i64) -> Vec<Cell> {
    ints(0..n, offset)
}

fn key_type(text: bool) -> ColType {
    if text {
        ColType::Text
    } else {
        ColType::Int
    }
}

/// Orders, lines and follow-ups.
pub fn orders(cx: &mut Ctx, ev: &Events) {
    let p = cx.plan;
    let d = p.domain;
    let (o, e) = (&p.order, &p.entity);
    let ekeys = cx.entity_keys.clone();
    let ety = key_type(p.entity_text_key);
    let mut t = Table::new(&o.table, Role::Event);
    let first_id = cx.rng.int(1, 100_000);
    t.add(&o.key, ColType::BigInt, ids(ev.orders.len(), first_id))
        .add(
            &e.key,
            ety,
            ev.orders.iter().map(|x| ekeys[x.entity as usize]).collect(),
        );
    cx.fk(&o.table, &[&e.key], &e.table, &[&e.key]);
    if let Some(rc) = &p.recipient_col {
        t.add(
            rc,
            ety,
            ev.orders
                .iter()
                .map(|x| x.recipient.map_or(Cell::Null, |r| ekeys[r as usize]))
                .collect(),
        );
        cx.fk(&o.table, &[rc], &e.table, &[&e.key]);
    }
    t.add(
        &o.time,
        o.time_type,
        ev.orders
            .iter()
            .map(|x| tcell(o.time_type, x.time))
            .collect(),
    );
    t.time_column = Some(o.time.clone());
    t.add(
        d.order.col,
        ColType::Money,
        ev.orders.iter().map(|x| Cell::Float(x.amount)).collect(),
    );
    let channel = cx.texts(
        ev.orders
            .iter()
            .map(|x| d.order.values[x.channel as usize % d.order.values.len()].to_string()),
    );
    t.add("channel", ColType::Text, channel);
    if let (Some(it), None) = (&p.items, &p.lines) {
        let ik = cx.item_keys.clone();
        t.add(
            &it.key,
            key_type(p.item_text_key),
            ev.orders
                .iter()
                .map(|x| x.item.map_or(Cell::Null, |i| ik[i as usize]))
                .collect(),
        );
        cx.fk(&o.table, &[&it.key], &it.table, &[&it.key]);
    }
    t.primary_key = vec![o.key.clone()];
    cx.finish(t, Some(o));
    lines(cx, ev, first_id);
}

/// Order lines (each an item) and their follow-ups: the chain's two lower hops.
fn lines(cx: &mut Ctx, ev: &Events, first_id: i64) {
    let p = cx.plan;
    let d = p.domain;
    let o = &p.order;
    let (Some(l), Some(it)) = (&p.lines, &p.items) else {
        return;
    };
    let mut t = Table::new(&l.table, Role::Event);
    let ik = cx.item_keys.clone();
    t.add(&l.key, ColType::BigInt, ids(ev.lines.len(), 1))
        .add(
            &o.key,
            ColType::BigInt,
            ev.lines
                .iter()
                .map(|x| Cell::Int(x.order as i64 + first_id))
                .collect(),
        )
        .add(
            &it.key,
            key_type(p.item_text_key),
            ev.lines.iter().map(|x| ik[x.item as usize]).collect(),
        )
        .add(
            d.line.col,
            ColType::Int,
            ev.lines.iter().map(|x| Cell::Int(x.qty as i64)).collect(),
        )
        .add(
            "unit_price",
            ColType::Money,
            ev.lines.iter().map(|x| Cell::Float(x.price)).collect(),
        )
        .add(
            &l.time,
            l.time_type,
            ev.lines
                .iter()
                .map(|x| tcell(l.time_type, ev.orders[x.order as usize].time))
                .collect(),
        );
    t.time_column = Some(l.time.clone());
    t.primary_key = vec![l.key.clone()];
    cx.fk(&l.table, &[&o.key], &o.table, &[&o.key]);
    cx.fk(&l.table, &[&it.key], &it.table, &[&it.key]);
    cx.finish(t, Some(l));
    if let Some(f) = &p.followup {
        let mut t = Table::new(&f.table, Role::Event);
        let reasons =
            cx.texts(ev.followups.iter().map(|x| {
                d.followup.values[x.reason as usize % d.followup.values.len()].to_string()
            }));
        t.add(&f.key, ColType::Int, ids(ev.followups.len(), 1))
            .add(
                &l.key,
                ColType::BigInt,
                ev.followups
                    .iter()
                    .map(|x| Cell::Int(x.line as i64 + 1))
                    .collect(),
            )
            .add(
                &f.time,
                f.time_type,
                ev.followups
                    .iter()
                    .map(|x| tcell(f.time_type, x.time))
                    .collect(),
            )
            .add(d.followup.col, ColType::Text, reasons);
        t.time_column = Some(f.time.clone());
        t.primary_key = vec![f.key.clone()];
        cx.fk(&f.table, &[&l.key], &l.table, &[&l.key]);
        cx.finish(t, Some(f));
    }
}

/// Sessions, tickets and group memberships: events straight on the entity.
pub fn entity_events(cx: &mut Ctx, ev: &Events) {
    sessions(cx, ev);
    tickets(cx, ev);
    memberships(cx, ev);
}

fn sessions(cx: &mut Ctx, ev: &Events) {
    let p = cx.plan;
    let d = p.domain;
    let e = &p.entity;
    let ekeys = cx.entity_keys.clone();
    let ety = key_type(p.entity_text_key);
    let Some(s) = &p.session else {
        return;
    };
    let mut t = Table::new(&s.table, Role::Event);
    let dev = cx.texts(
        ev.sessions
            .iter()
            .map(|x| d.session.values[x.device as usize % d.session.values.len()].to_string()),
    );
    t.add(&s.key, ColType::BigInt, ids(ev.sessions.len(), 1))
        .add(
            &e.key,
            ety,
            ev.sessions
                .iter()
                .map(|x| ekeys[x.entity as usize])
                .collect(),
        )
        .add(
            &s.time,
            s.time_type,
            ev.sessions
                .iter()
                .map(|x| tcell(s.time_type, x.time))
                .collect(),
        )
        .add(
            d.session.col,
            ColType::Int,
            ev.sessions
                .iter()
                .map(|x| Cell::Int(x.duration as i64))
                .collect(),
        )
        .add("device", ColType::Text, dev);
    t.time_column = Some(s.time.clone());
    t.primary_key = vec![s.key.clone()];
    cx.fk(&s.table, &[&e.key], &e.table, &[&e.key]);
    cx.finish(t, Some(s));
}

/// Tickets name the entity and, for half of them, its latest order.
fn tickets(cx: &mut Ctx, ev: &Events) {
    let p = cx.plan;
    let d = p.domain;
    let e = &p.entity;
    let ekeys = cx.entity_keys.clone();
    let ety = key_type(p.entity_text_key);
    let Some(k) = &p.ticket else {
        return;
    };
    let o = &p.order;
    let first_order = cx
        .tables
        .iter()
        .find(|t| t.name == o.table)
        .and_then(|t| t.columns[0].data.first().copied());
    let base = match first_order {
        Some(Cell::Int(i)) => i,
        _ => 1,
    };
    let mut t = Table::new(&k.table, Role::Event);
    let prio = cx.texts(
        ev.tickets
            .iter()
            .map(|x| d.ticket.values[x.priority as usize].to_string()),
    );
    t.add(&k.key, ColType::Int, ids(ev.tickets.len(), 1))
        .add(
            &e.key,
            ety,
            ev.tickets
                .iter()
                .map(|x| ekeys[x.entity as usize])
                .collect(),
        )
        .add(
            &o.key,
            ColType::BigInt,
            ev.tickets
                .iter()
                .map(|x| x.order.map_or(Cell::Null, |i| Cell::Int(i as i64 + base)))
                .collect(),
        )
        .add(
            &k.time,
            k.time_type,
            ev.tickets
                .iter()
                .map(|x| tcell(k.time_type, x.time))
                .collect(),
        )
        .add(d.ticket.col, ColType::Text, prio);
    t.time_column = Some(k.time.clone());
    t.primary_key = vec![k.key.clone()];
    cx.fk(&k.table, &[&e.key], &e.table, &[&e.key]);
    cx.fk(&k.table, &[&o.key], &o.table, &[&o.key]);
    cx.finish(t, Some(k));
}

/// The many-to-many link: (entity, group) composite key, timed by joining.
fn memberships(cx: &mut Ctx, ev: &Events) {
    let p = cx.plan;
    let e = &p.entity;
    let ekeys = cx.entity_keys.clone();
    let ety = key_type(p.entity_text_key);
    let (Some(l), Some(g)) = (&p.link, &p.group) else {
        return;
    };
    let mut t = Table::new(&l.table, Role::Link);
    t.add(
        &e.key,
        ety,
        ev.memberships
            .iter()
            .map(|x| ekeys[x.entity as usize])
            .collect(),
    )
    .add(
        &g.key,
        ColType::Int,
        ev.memberships
            .iter()
            .map(|x| Cell::Int(x.group as i64 + 1))
            .collect(),
    )
    .add(
        &l.time,
        l.time_type,
        ev.memberships
            .iter()
            .map(|x| tcell(l.time_type, x.time))
            .collect(),
    );
    t.time_column = Some(l.time.clone());
    t.primary_key = vec![e.key.clone(), g.key.clone()];
    cx.fk(&l.table, &[&e.key], &e.table, &[&e.key]);
    cx.fk(&l.table, &[&g.key], &g.table, &[&g.key]);
    cx.finish(t, Some(l));
}

/// Yearly summaries keyed by (entity, year), reported on the next 1st of January, and
/// their detail rows, which reference them by that composite key.
pub fn periodic(cx: &mut Ctx, ev: &Events) {
    let p = cx.plan;
    let Some(pn) = &p.periodic else { return };
    let e = &p.entity;
    let end = p.start + p.days * DAY;
    let year_of = |us: i64| crate::base::time::civil_from_days(us.div_euclid(DAY)).0;
    let (y0, y1) = (year_of(p.start), year_of(end));
    let mut counts = vec![vec![0u32; (y1 - y0 + 1) as usize]; cx.world.entities.len()];
    for o in &ev.orders {
        counts[o.entity as usize][(year_of(o.time) - y0) as usize] += 1;
    }
    let (mut ent, mut year, mut rep, mut cnt, mut score) = (vec![], vec![], vec![], vec![], vec![]);
    for (i, c) in counts.iter().enumerate() {
        let x = &cx.world.entities[i];
        for (k, &n) in c.iter().enumerate() {
            let y = y0 + k as i64;
            let reported = crate::base::time::days_from_civil(y + 1, 1, 1) * DAY;
            if n == 0 || reported >= end {
                continue;
            }
            ent.push(cx.entity_keys[i]);
            year.push(Cell::Int(y));
            rep.push(Cell::Time(reported));
            cnt.push(Cell::Int(n as i64));
            let sc = 50.0 + 8.0 * (1.0 + n as f64).ln() + 6.0 * x.val - 4.0 * x.frail
                + 5.0 * cx.rng.normal();
            score.push(Cell::Float((sc * 10.0).round() / 10.0));
        }
    }
    let mut t = Table::new(&pn.table, Role::Event);
    let ety = key_type(p.entity_text_key);
    let rows = ent.len();
    t.add(&e.key, ety, ent.clone())
        .add("year", ColType::Int, year.clone())
        .add("reported_on", ColType::Date, rep.clone())
        .add("activity_count", ColType::Int, cnt)
        .add(p.domain.periodic.col, ColType::Float, score);
    t.time_column = Some("reported_on".into());
    t.primary_key = vec![e.key.clone(), "year".into()];
    cx.fk(&pn.table, &[&e.key], &e.table, &[&e.key]);
    cx.finish(t, Some(pn));
    let Some(dn) = &p.periodic_detail else { return };
    let metrics = ["engagement", "spend", "service", "retention", "growth"];
    let mut t = Table::new(&dn.table, Role::Event);
    let (mut de, mut dy, mut dl, mut dr, mut dm, mut dv) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for r in 0..rows {
        for line in 1..=cx.rng.int(1, 4) {
            de.push(ent[r]);
            dy.push(year[r]);
            dl.push(Cell::Int(line));
            dr.push(rep[r]);
            dm.push(metrics[cx.rng.index(metrics.len())].to_string());
            dv.push(Cell::Float(
                (cx.rng.uniform(0.0, 10.0) * 100.0).round() / 100.0,
            ));
        }
    }
    let dm = cx.texts(dm);
    t.add(&e.key, ety, de)
        .add("year", ColType::Int, dy)
        .add("line_no", ColType::Int, dl)
        .add("reported_on", ColType::Date, dr)
        .add("metric", ColType::Text, dm)
        .add("value", ColType::Float, dv);
    t.time_column = Some("reported_on".into());
    t.primary_key = vec![e.key.clone(), "year".into(), "line_no".into()];
    cx.fk(&dn.table, &[&e.key, "year"], &pn.table, &[&e.key, "year"]);
    cx.finish(t, Some(dn));
}

/// Noise tables: static lookups (before the entity table, which references them) when
/// `lookups`, the others after.
pub fn noise_tables(cx: &mut Ctx, lookups: bool) {
    let p = cx.plan;
    let end_day = p.days;
    for nt in &p.noise {
        if (nt.kind == NoiseKind::EntityLookup) != lookups {
            continue;
        }
        let n: &Named = &nt.named;
        let mut t = Table::new(&n.table, Role::Noise);
        let rows = match nt.kind {
            NoiseKind::EntityLog => nt.rows.max(1),
            _ => nt.rows,
        };
        t.add(&n.key, ColType::Int, ids(rows, 1));
        match nt.kind {
            NoiseKind::EntityLookup | NoiseKind::Isolated => {
                let names = cx.texts(
                    (0..rows).map(|i| format!("{}_{}", super::vocab::singular(&n.table), i + 1)),
                );
                t.add("name", ColType::Text, names);
            }
            NoiseKind::EntityLog => {
                let ne = cx.entity_keys.len();
                let who: Vec<usize> = (0..rows).map(|_| cx.rng.index(ne)).collect();
                let times = who
                    .iter()
                    .map(|&i| {
                        let first = (cx.world.entities[i].signup - p.start) / DAY + 1;
                        let day = cx.rng.int(first.min(end_day - 1), end_day);
                        tcell(
                            n.time_type,
                            p.start + day * DAY + cx.rng.int(0, 86_400) * 1_000_000,
                        )
                    })
                    .collect();
                let ety = key_type(p.entity_text_key);
                t.add(
                    &p.entity.key,
                    ety,
                    who.iter().map(|&i| cx.entity_keys[i]).collect(),
                )
                .add(&n.time, n.time_type, times);
                t.time_column = Some(n.time.clone());
                cx.fk(
                    &n.table,
                    &[&p.entity.key],
                    &p.entity.table,
                    &[&p.entity.key],
                );
            }
            NoiseKind::TimedIsolated => {
                let times = (0..rows)
                    .map(|_| {
                        tcell(
                            n.time_type,
                            p.start
                                + cx.rng.int(0, end_day) * DAY
                                + cx.rng.int(0, 86_400) * 1_000_000,
                        )
                    })
                    .collect();
                t.add(&n.time, n.time_type, times);
                t.time_column = Some(n.time.clone());
            }
        }
        t.primary_key = vec![n.key.clone()];
        let mut named = n.clone();
        named.noise_cols = named.noise_cols.max(2);
        cx.finish(t, Some(&named));
    }
}
