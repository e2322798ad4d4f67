//! Day-by-day simulation of every entity's life: orders (with lines and follow-ups),
//! sessions, tickets, group memberships and churn. The same latent traits and the same
//! feedback rules produce the past and the future, so that what happened before an anchor
//! says something about what happens after it:
//! - the order rate is `exp(act + trend·years + season + habit·log(1+recent orders)
//!   − dissatisfaction·recent trouble + group boost + short-term intent (lagged) + shock)`;
//! - sessions follow the same activity and show the intent **before** it turns into
//!   orders;
//! - follow-ups (returns...) and severe tickets raise trouble, which lowers the rate and
//!   raises the churn hazard (`exp(frail − 0.3·act + 0.7·trouble)`); a churned entity stops;
//! - `noise` scales the unobservable shocks.

use super::latent::World;
use super::plan::Plan;
use super::rng::{sigmoid, Rng};
use super::{DbConfig, DAY};

pub struct Order {
    pub entity: u32,
    pub time: i64,
    pub amount: f64,
    pub channel: u8,
    pub recipient: Option<u32>,
    /// The single item of an order without lines.
    pub item: Option<u32>,
}

pub struct Line {
    pub order: u32,
    pub item: u32,
    pub qty: u32,
    pub price: f64,
}

pub struct Followup {
    pub line: u32,
    pub time: i64,
    pub reason: u8,
}

pub struct Session {
    pub entity: u32,
    pub time: i64,
    pub duration: f64,
    pub device: u8,
}

pub struct Ticket {
    pub entity: u32,
    pub time: i64,
    pub priority: u8,
    pub order: Option<u32>,
}

pub struct Membership {
    pub entity: u32,
    pub group: u32,
    pub time: i64,
}

#[derive(Default)]
pub struct Events {
    pub orders: Vec<Order>,
    pub lines: Vec<Line>,
    pub followups: Vec<Followup>,
    pub sessions: Vec<Session>,
    pub tickets: Vec<Ticket>,
    pub memberships: Vec<Membership>,
}

/// Global rates and the shape of the year and the week.
struct Params {
    ln_order: f64,
    ln_session: f64,
    ln_ticket: f64,
    hazard: f64,
    avg_amount: f64,
    week: [f64; 7],
    year_amp: f64,
    year_peak: f64,
    signal: f64,
    noise: f64,
}

/// Simulates every entity of `world`. Orders come out sorted by time (their ids follow).
pub fn simulate(seed: u64, plan: &Plan, world: &World, cfg: &DbConfig) -> Events {
    let mut rng = Rng::new(seed, "params");
    // First guess: every entity alive for 60% of the period.
    let exposure = (world.entities.len() as f64 * plan.days as f64 * 0.6).max(1.0);
    let guess = |target: f64| (target.max(1.0) / exposure).ln();
    let mut p = Params {
        ln_order: guess(plan.target_orders),
        ln_session: guess(plan.target_sessions),
        ln_ticket: guess(plan.target_tickets),
        hazard: rng.uniform(0.25, 0.8) / plan.days as f64,
        avg_amount: rng.lognormal(3.8, 0.6),
        week: std::array::from_fn(|_| 0.25 * rng.normal()),
        year_amp: rng.uniform(0.0, 0.4),
        year_peak: rng.uniform(0.0, 365.0),
        signal: cfg.signal,
        noise: cfg.noise,
    };
    // A pilot on a sample of entities corrects the guesses (feedback makes rates nonlinear).
    let sample: Vec<usize> = (0..world.entities.len())
        .step_by((world.entities.len() / 300).max(1))
        .collect();
    let mut pilot = Events::default();
    let mut prng = Rng::new(seed, "pilot");
    for &i in &sample {
        simulate_entity(i, plan, world, &p, &mut prng, &mut pilot);
    }
    let scale = world.entities.len() as f64 / sample.len() as f64;
    let per = |n: usize| (n as f64 * scale).max(1.0);
    p.ln_order += (plan.target_orders / per(pilot.orders.len())).ln();
    p.ln_session += (plan.target_sessions.max(1.0) / per(pilot.sessions.len())).ln();
    p.ln_ticket += (plan.target_tickets.max(1.0) / per(pilot.tickets.len())).ln();

    let mut rng = Rng::new(seed, "events");
    let mut ev = Events::default();
    for i in 0..world.entities.len() {
        simulate_entity(i, plan, world, &p, &mut rng, &mut ev);
    }
    sort_orders(&mut ev);
    ev
}

/// One entity's life from sign-up to churn or the end of the period.
fn simulate_entity(i: usize, plan: &Plan, w: &World, p: &Params, rng: &mut Rng, ev: &mut Events) {
    let e = &w.entities[i];
    let end = plan.start + plan.days * DAY;
    let first = (e.signup - plan.start) / DAY + 1;
    let (mut recent, mut trouble, mut boost, mut shock) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let mut intent = [0.0f64; 4];
    let mut pending: Vec<(i64, f64)> = Vec::new();
    let mut own: Vec<u32> = Vec::new();
    let mut joined: Vec<u32> = Vec::new();
    let s = p.signal;
    for day in first..plan.days {
        let t0 = plan.start + day * DAY;
        pending.retain(|&(d, inc)| {
            if d <= day {
                trouble += inc;
            }
            d > day
        });
        intent.rotate_right(1);
        intent[0] = 0.85 * intent[1] + 0.3 * s * rng.normal();
        if day % 14 == 0 {
            shock = 0.7 * shock + 0.45 * p.noise * rng.normal();
        }
        let doy = (day as f64 + p.year_peak) % 365.0;
        let season =
            p.week[(day % 7) as usize] + p.year_amp * (std::f64::consts::TAU * doy / 365.0).cos();
        let years = (day - plan.days / 2) as f64 / 365.0;
        let habit = s * 0.3 * (1.0 + recent).ln();
        let lr = p.ln_order + e.act + e.trend * years + season + habit - s * 0.5 * trouble.min(4.0)
            + boost
            + shock
            + 0.8 * intent[3];
        for _ in 0..rng.poisson(lr.exp()) {
            let t = t0 + rng.int(6 * 3600, 23 * 3600) * 1_000_000;
            order(i, t, end, plan, w, p, rng, ev, &mut own, &mut pending);
            recent += 1.0;
        }
        if plan.session.is_some() {
            let ls = p.ln_session + 0.8 * e.act + 1.2 * intent[0] + 0.5 * shock + season + habit;
            for _ in 0..rng.poisson(ls.exp()) {
                ev.sessions.push(Session {
                    entity: i as u32,
                    time: t0 + rng.int(0, 86_400) * 1_000_000,
                    duration: rng.lognormal(5.5 + 0.3 * e.act, 1.0).round(),
                    device: (rng.index(3) + e.segment % 2).min(2) as u8,
                });
            }
        }
        if plan.ticket.is_some() {
            // Frail entities complain more (and more severely): tickets foretell churn.
            let lt = p.ln_ticket + 0.8 * trouble.min(4.0) + 1.0 * e.frail + 0.3 * e.act;
            for _ in 0..rng.poisson(lt.exp()) {
                let severe = rng.bool(sigmoid(-1.5 + 0.8 * trouble + 1.2 * e.frail));
                let priority = if severe { 2 } else { rng.index(2) as u8 };
                if severe {
                    pending.push((day + 1, 0.6));
                }
                let time = t0 + rng.int(0, 86_400) * 1_000_000;
                let order = own_last_order(ev, i, t0, rng);
                ev.tickets.push(Ticket {
                    entity: i as u32,
                    time,
                    priority,
                    order,
                });
            }
        }
        if !w.groups.is_empty() && rng.bool(1.5 / 365.0 * (0.4 * e.act).exp()) {
            let g = rng.index(w.groups.len()) as u32;
            if !joined.contains(&g) {
                joined.push(g);
                boost += s * if w.groups[g as usize] == 0 { 0.4 } else { 0.08 };
                ev.memberships.push(Membership {
                    entity: i as u32,
                    group: g,
                    time: t0 + rng.int(0, 86_400) * 1_000_000,
                });
            }
        }
        let h = p.hazard * (e.frail - 0.3 * e.act + s * 0.7 * trouble.min(4.0)).exp();
        if rng.bool(h) {
            break;
        }
        recent *= 0.92;
        trouble *= 0.96;
    }
}

/// Half the tickets concern the entity's latest order before them (this entity's orders
/// are the newest ones while it is simulated).
fn own_last_order(ev: &Events, i: usize, before: i64, rng: &mut Rng) -> Option<u32> {
    if !rng.bool(0.5) {
        return None;
    }
    ev.orders
        .iter()
        .rev()
        .take(50)
        .position(|o| o.entity == i as u32 && o.time < before)
        .map(|k| (ev.orders.len() - 1 - k) as u32)
}

/// One order at `t`: its lines, their items, and the follow-ups they will cause.
#[allow(clippy::too_many_arguments)]
fn order(
    i: usize,
    t: i64,
    end: i64,
    plan: &Plan,
    w: &World,
    p: &Params,
    rng: &mut Rng,
    ev: &mut Events,
    own: &mut Vec<u32>,
    pending: &mut Vec<(i64, f64)>,
) {
    let e = &w.entities[i];
    let idx = ev.orders.len() as u32;
    let channel = rng.weighted(&[1.0 + e.segment as f64 * 0.3, 1.0, 0.5, 0.3]) as u8;
    let recipient = (plan.recipient_col.is_some() && rng.bool(0.08))
        .then(|| rng.index(i.max(1)) as u32)
        .filter(|&r| w.entities[r as usize].signup < t);
    let mut amount;
    let mut item = None;
    if plan.lines.is_some() {
        amount = 0.0;
        for _ in 0..1 + rng.poisson(1.3 * (0.4 * e.val).exp()) {
            let it = choose_item(e, t, w, rng, own);
            let qty = 1 + rng.poisson(0.4 * (0.3 * e.val).exp());
            let price =
                (w.items[it as usize].price * rng.uniform(0.85, 1.0) * 100.0).round() / 100.0;
            amount += qty as f64 * price;
            let line = ev.lines.len() as u32;
            ev.lines.push(Line {
                order: idx,
                item: it,
                qty,
                price,
            });
            let defect = w.items[it as usize].defect;
            if plan.followup.is_some() && rng.bool(sigmoid(-3.2 + defect + 0.4 * e.frail)) {
                let ft = t + rng.int(DAY / 1_000_000, 30 * DAY / 1_000_000) * 1_000_000;
                if ft < end {
                    pending.push(((ft - plan.start) / DAY, 0.8));
                    ev.followups.push(Followup {
                        line,
                        time: ft,
                        reason: rng.index(4) as u8,
                    });
                }
            }
        }
    } else if plan.items.is_some() {
        let it = choose_item(e, t, w, rng, own);
        item = Some(it);
        amount = w.items[it as usize].price * (1 + rng.poisson(0.3 * (0.3 * e.val).exp())) as f64;
    } else {
        let ch = [0.0, 0.15, -0.1, 0.3][channel as usize];
        amount = rng.lognormal(p.avg_amount.ln() + 0.6 * e.val + ch, 0.45 + 0.2 * p.noise);
    }
    amount = (amount * 100.0).round() / 100.0;
    ev.orders.push(Order {
        entity: i as u32,
        time: t,
        amount,
        channel,
        recipient,
        item,
    });
}

/// An item: often one bought before (repeat), else by taste, season and popularity.
fn choose_item(
    e: &super::latent::Entity,
    t: i64,
    w: &World,
    rng: &mut Rng,
    own: &mut Vec<u32>,
) -> u32 {
    if !own.is_empty() && rng.bool(0.35) {
        return own[rng.index(own.len())];
    }
    let doy = (t / DAY) as f64 % 365.0;
    let weights: Vec<f64> = (0..w.n_categories)
        .map(|c| {
            let peak = 0.5 * (std::f64::consts::TAU * (doy - w.category_peak[c]) / 365.0).cos();
            if w.by_category[c].0.is_empty() {
                0.0
            } else {
                (e.taste[c] + peak).exp()
            }
        })
        .collect();
    let c = rng.weighted(&weights);
    let (ids, cum) = &w.by_category[c];
    let mut it = ids[0];
    for _ in 0..5 {
        let cand = ids[rng.weighted_cum(cum)];
        if w.items[cand].launch <= t {
            it = cand;
            break;
        }
    }
    if own.len() >= 20 {
        own.remove(0);
    }
    own.push(it as u32);
    it as u32
}

/// Orders sorted by time (ties by entity), lines by their order, follow-ups and tickets
/// renumbered to match: ids then grow with time, as an auto-increment would.
fn sort_orders(ev: &mut Events) {
    let mut perm: Vec<u32> = (0..ev.orders.len() as u32).collect();
    perm.sort_by_key(|&k| (ev.orders[k as usize].time, ev.orders[k as usize].entity, k));
    let mut new_of = vec![0u32; perm.len()];
    for (new, &old) in perm.iter().enumerate() {
        new_of[old as usize] = new as u32;
    }
    let mut orders: Vec<Option<Order>> = std::mem::take(&mut ev.orders)
        .into_iter()
        .map(Some)
        .collect();
    ev.orders = perm
        .iter()
        .map(|&k| orders[k as usize].take().expect("each once"))
        .collect();
    for l in &mut ev.lines {
        l.order = new_of[l.order as usize];
    }
    let mut lperm: Vec<u32> = (0..ev.lines.len() as u32).collect();
    lperm.sort_by_key(|&k| (ev.lines[k as usize].order, k));
    let mut lnew = vec![0u32; lperm.len()];
    for (new, &old) in lperm.iter().enumerate() {
        lnew[old as usize] = new as u32;
    }
    let mut lines: Vec<Option<Line>> = std::mem::take(&mut ev.lines)
        .into_iter()
        .map(Some)
        .collect();
    ev.lines = lperm
        .iter()
        .map(|&k| lines[k as usize].take().expect("each once"))
        .collect();
    for f in &mut ev.followups {
        f.line = lnew[f.line as usize];
    }
    ev.followups.sort_by_key(|f| (f.time, f.line));
    for t in &mut ev.tickets {
        t.order = t.order.map(|o| new_of[o as usize]);
    }
    ev.tickets.sort_by_key(|t| (t.time, t.entity));
    ev.sessions.sort_by_key(|s| (s.time, s.entity));
    ev.memberships.sort_by_key(|m| (m.time, m.entity));
}
