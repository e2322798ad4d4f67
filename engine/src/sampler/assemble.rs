//! Assembly of the rows the statements return into one subgraph per seed: each row enters
//! its context once, linked to the row it came from, and the next hop's requests.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use super::plan::{Direction, Edge, Plan};
use super::statements::Request;
use super::{count_column, COUNT_CAP};
use crate::base::hash::Fnv;
use crate::encode::{RawRow, Subgraph, Value};
use crate::schema::SemanticType;

/// A row as returned by a statement, decoded by the extension.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedRow {
    pub ord: usize,
    pub key: String,
    pub time: Option<i64>,
    pub structural: Vec<Option<String>>,
    pub values: Vec<Value>,
    /// How many rows matched the row's request, when the statement counts them
    /// ([`Plan::counts_at`]).
    pub children: Option<i64>,
}

impl FetchedRow {
    /// The bytes the row holds, about (what a memory budget charges for it).
    pub fn size(&self) -> usize {
        let texts = |s: &Option<String>| 24 + s.as_ref().map_or(0, String::len);
        let value = |v: &Value| 32 + if let Value::Text(t) = v { t.len() } else { 0 };
        96 + self.key.len()
            + self.structural.iter().map(texts).sum::<usize>()
            + self.values.iter().map(value).sum::<usize>()
    }
}

type FnvBuild = BuildHasherDefault<Fnv>;

/// A table's number in the plan, its shared name and its value columns' shared names.
type TableNames = (u32, Arc<str>, Vec<Arc<str>>);

/// Builds the subgraphs of a batch from the rows the statements return.
pub struct Assembler<'p> {
    plan: &'p Plan,
    pub contexts: Vec<Subgraph>,
    /// Via which edge each row came (`None` for the seed).
    pub via: Vec<Vec<Option<String>>>,
    structural: Vec<Vec<Vec<Option<String>>>>,
    /// Per context: (table number, row key) → row index.
    visited: Vec<HashMap<(u32, String), usize, FnvBuild>>,
    /// Per table of the plan: its number, shared name and value-column names.
    names: HashMap<String, TableNames>,
    frontier: Vec<(usize, usize)>,
    hop: u8,
    /// Rows dropped because they were newer than the anchor. The SQL already excludes
    /// them; a non-zero count would be a bug, so it is checked in tests.
    pub dropped_future: usize,
}

impl<'p> Assembler<'p> {
    pub fn new(plan: &'p Plan, anchors: &[i64]) -> Self {
        let n = anchors.len();
        Assembler {
            plan,
            contexts: anchors
                .iter()
                .map(|&a| Subgraph {
                    anchor: a,
                    rows: Vec::new(),
                    seed: 0,
                })
                .collect(),
            via: vec![Vec::new(); n],
            structural: vec![Vec::new(); n],
            visited: vec![HashMap::default(); n],
            names: plan
                .tables
                .iter()
                .enumerate()
                .map(|(i, (name, tp))| {
                    let cols = tp
                        .values
                        .iter()
                        .map(|v| Arc::from(v.name.as_str()))
                        .collect();
                    (name.clone(), (i as u32, Arc::from(name.as_str()), cols))
                })
                .collect(),
            frontier: Vec::new(),
            hop: 0,
            dropped_future: 0,
        }
    }

    /// Seed requests: the entity keys (composite keys as one text per column).
    pub fn seed_requests(&self, keys: &[Vec<String>]) -> Vec<Request> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| Request {
                ctx: i,
                rows: vec![0],
                anchor: self.contexts[i].anchor,
                keys: k.clone(),
            })
            .collect()
    }

    /// Whether context `i` found its seed row.
    pub fn has_seed(&self, i: usize) -> bool {
        !self.contexts[i].rows.is_empty()
    }

    /// Adds a fetched row to context `ctx` (linked to `link`'s row) and returns its index,
    /// or the index of the same row reached earlier; `None` when it is dropped (newer than
    /// the anchor, or the context is full).
    fn add_row(
        &mut self,
        table: &str,
        r: FetchedRow,
        ctx: usize,
        via: Option<&str>,
        link: Option<(usize, bool)>,
    ) -> Option<usize> {
        let anchor = self.contexts[ctx].anchor;
        if matches!(r.time, Some(t) if t > anchor) {
            self.dropped_future += 1;
            return None;
        }
        let (tno, tname, cols) = &self.names[table];
        let id = (*tno, r.key);
        if let Some(&existing) = self.visited[ctx].get(&id) {
            if let Some((other, other_is_parent)) = link {
                self.link(ctx, existing, other, other_is_parent);
            }
            return Some(existing);
        }
        if self.contexts[ctx].rows.len() >= self.plan.config.max_rows {
            return None;
        }
        let tp = &self.plan.tables[table];
        let values = tp
            .values
            .iter()
            .zip(cols)
            .zip(r.values)
            .map(|((c, name), v)| (name.clone(), c.semantic, v))
            .collect();
        let idx = self.contexts[ctx].rows.len();
        self.contexts[ctx].rows.push(RawRow {
            table: tname.clone(),
            key: id.1.clone(),
            time: r.time,
            hop: self.hop,
            parents: Vec::new(),
            values,
        });
        self.via[ctx].push(via.map(str::to_string));
        self.structural[ctx].push(r.structural);
        self.visited[ctx].insert(id, idx);
        if let Some((other, other_is_parent)) = link {
            self.link(ctx, idx, other, other_is_parent);
        }
        self.frontier.push((ctx, idx));
        Some(idx)
    }

    /// Records that `row` references `other` (when `other_is_parent`) or the reverse.
    fn link(&mut self, ctx: usize, row: usize, other: usize, other_is_parent: bool) {
        let (child, parent) = if other_is_parent {
            (row, other)
        } else {
            (other, row)
        };
        let p = &mut self.contexts[ctx].rows[child].parents;
        if child != parent && !p.contains(&parent) {
            p.push(parent);
        }
    }

    pub fn accept_seeds(&mut self, table: &str, rows: Vec<FetchedRow>) {
        for r in rows {
            let ctx = r.ord;
            if self.has_seed(ctx) {
                continue;
            }
            self.add_row(table, r, ctx, None, None);
        }
    }

    /// The hop being walked (0 while seeding).
    pub fn hop(&self) -> u8 {
        self.hop
    }

    /// Starts the next hop: returns false when the walk is over.
    pub fn next_hop(&mut self) -> bool {
        self.hop += 1;
        self.hop <= self.plan.config.depth && !self.frontier.is_empty()
    }

    /// Takes the current frontier (rows added by the previous hop).
    pub fn take_frontier(&mut self) -> Vec<(usize, usize)> {
        std::mem::take(&mut self.frontier)
    }

    /// The requests of one step from the given frontier rows. Rows of one context asking
    /// for the same keys share a request; a parent already in the context (looked up by its
    /// primary key) is linked at once instead of fetched again.
    pub fn requests(
        &mut self,
        frontier: &[(usize, usize)],
        edge: &Edge,
        dir: Direction,
    ) -> Vec<Request> {
        let (from_table, from_cols) = match dir {
            Direction::ToParent => (&edge.child, &edge.child_columns),
            Direction::ToChildren => (&edge.parent, &edge.parent_columns),
        };
        let tp = &self.plan.tables[from_table];
        let pos: Vec<usize> = from_cols
            .iter()
            .filter_map(|c| tp.structural.iter().position(|s| s == c))
            .collect();
        if pos.len() != from_cols.len() {
            return Vec::new();
        }
        // A single-column FK onto the parent's primary key, of the same type: the FK's text
        // is the parent row's key, so a visited parent can be recognised without a lookup.
        let parent = &self.plan.tables[&edge.parent];
        let by_pk = dir == Direction::ToParent
            && edge.parent_columns.len() == 1
            && parent.key_columns == edge.parent_columns
            && tp.types.get(&edge.child_columns[0]) == parent.types.get(&edge.parent_columns[0]);
        let parent_no = self.names[&edge.parent].0;
        let mut out: Vec<Request> = Vec::new();
        let mut index: HashMap<(usize, Vec<String>), usize, FnvBuild> = HashMap::default();
        let mut links = Vec::new();
        for &(ctx, row) in frontier {
            if *self.contexts[ctx].rows[row].table != **from_table {
                continue;
            }
            let s = &self.structural[ctx][row];
            let Some(keys) = pos
                .iter()
                .map(|&p| s[p].clone())
                .collect::<Option<Vec<String>>>()
            else {
                continue;
            };
            if by_pk {
                let id = (parent_no, keys[0].clone());
                if let Some(&existing) = self.visited[ctx].get(&id) {
                    links.push((ctx, existing, row));
                    continue;
                }
            }
            match index.entry((ctx, keys)) {
                std::collections::hash_map::Entry::Occupied(e) => out[*e.get()].rows.push(row),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let keys = e.key().1.clone();
                    e.insert(out.len());
                    out.push(Request {
                        ctx,
                        rows: vec![row],
                        anchor: self.contexts[ctx].anchor,
                        keys,
                    });
                }
            }
        }
        for (ctx, parent_row, child_row) in links {
            self.link(ctx, parent_row, child_row, false);
        }
        out
    }

    /// Adds the rows a step returned (`ord` indexes `requests`).
    pub fn accept_step(
        &mut self,
        edge: &Edge,
        dir: Direction,
        requests: &[Request],
        rows: Vec<FetchedRow>,
    ) {
        let table = match dir {
            Direction::ToParent => edge.parent.clone(),
            Direction::ToChildren => edge.child.clone(),
        };
        if self.plan.counts_at(dir, self.hop) {
            self.add_counts(edge, requests, &rows);
        }
        for r in rows {
            let Some(req) = requests.get(r.ord) else {
                continue;
            };
            let ctx = req.ctx;
            // The fetched row is the parent of each requesting row (ToParent) or its child
            // (ToChildren).
            let is_parent = dir == Direction::ToChildren;
            let Some(idx) = self.add_row(
                &table,
                r,
                ctx,
                Some(&edge.name),
                Some((req.rows[0], is_parent)),
            ) else {
                continue;
            };
            for &from in &req.rows[1..] {
                self.link(ctx, idx, from, is_parent);
            }
        }
    }

    /// Puts on each requesting row one cell: ln(1 + rows its request matched), 0 when the
    /// statement returned none for it.
    fn add_counts(&mut self, edge: &Edge, requests: &[Request], rows: &[FetchedRow]) {
        let mut n = vec![0i64; requests.len()];
        for r in rows {
            if let (Some(slot), Some(c)) = (n.get_mut(r.ord), r.children) {
                *slot = c.clamp(0, COUNT_CAP);
            }
        }
        let name: Arc<str> = Arc::from(count_column(edge).as_str());
        for (req, n) in requests.iter().zip(n) {
            for &row in &req.rows {
                self.contexts[req.ctx].rows[row].values.push((
                    name.clone(),
                    SemanticType::Numerical,
                    Value::Num((n as f64).ln_1p()),
                ));
            }
        }
    }
}
