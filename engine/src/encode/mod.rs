//! The interface between the sampler and the model: raw rows of a context subgraph in,
//! cell tokens out.
//!
//! One token per non-key cell. A token carries its column's identity (an id in the task's
//! vocabulary of `table.column` names, fitted on training contexts), its value kind and an
//! encoded value: numbers by their rank among the training values (`quantile`), datetimes
//! relative to the context's anchor, booleans, categorical/text values hashed into buckets,
//! NULL as its own kind. The seed row gets one extra **target token** (column
//! [`TARGET_COLUMN`], kind [`Kind::Mask`]) where the model reads its prediction.

mod quantile;
mod rare;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::base::hash::Fnv;
use crate::schema::SemanticType;

/// A cell value as the sampler read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Num(f64),
    Bool(bool),
    Text(String),
    /// Microseconds since the Unix epoch, UTC.
    Time(i64),
}

/// One row of a context. Key columns are not among `values` (the sampler leaves them out;
/// the encoder also skips any cell whose semantic type is `Key` or `Unsupported`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawRow {
    /// Quoted qualified table name.
    pub table: Arc<str>,
    /// The row's primary key rendered as text (identity only, never encoded).
    pub key: String,
    /// The row's time-column value (µs since epoch UTC), `None` for static tables.
    pub time: Option<i64>,
    /// Hops from the seed row.
    pub hop: u8,
    /// Indices (into the subgraph's `rows`) of the rows this row references by FK.
    pub parents: Vec<usize>,
    /// `(column, semantic type, value)`; names are shared by every row of a table.
    pub values: Vec<(Arc<str>, SemanticType, Value)>,
}

impl RawRow {
    /// A row from borrowed names (tests, generated data).
    pub fn new(
        table: &str,
        key: impl Into<String>,
        time: Option<i64>,
        hop: u8,
        parents: Vec<usize>,
        values: Vec<(&str, SemanticType, Value)>,
    ) -> RawRow {
        RawRow {
            table: table.into(),
            key: key.into(),
            time,
            hop,
            parents,
            values: values
                .into_iter()
                .map(|(c, s, v)| (c.into(), s, v))
                .collect(),
        }
    }
}

/// The rows the sampler gathered for one prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subgraph {
    /// Anchor time, µs since epoch UTC.
    pub anchor: i64,
    pub rows: Vec<RawRow>,
    /// Index of the seed (entity) row in `rows`.
    pub seed: usize,
}

/// Value kind of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum Kind {
    Num = 0,
    Time = 1,
    Cat = 2,
    Bool = 3,
    Null = 4,
    Mask = 5,
}

pub const N_KINDS: usize = 6;
/// Column id shared by every column not in the vocabulary.
pub const OOV_COLUMN: u32 = 0;
/// Column id of the target token.
pub const TARGET_COLUMN: u32 = 1;
/// Table id shared by tables not in the vocabulary.
pub const OOV_TABLE: u32 = 0;
/// Time features per token: signed log-days to the anchor, then sin/cos of day of week,
/// of the position in the year and of the hour of the day.
pub const TIME_FEATS: usize = 7;
/// Largest hop the model distinguishes (larger hops are clamped).
pub const MAX_HOP: u8 = 7;

const US_PER_DAY: f64 = 86_400e6;
const Z_CLIP: f64 = 10.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// Tokens per context (target token included); farther and older rows are dropped first.
    pub max_tokens: usize,
    /// Hash buckets for categorical and text values.
    pub n_buckets: u32,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            max_tokens: 256,
            n_buckets: 4096,
        }
    }
}

/// Statistics of a numeric column over the training contexts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumStats {
    pub mean: f64,
    pub std: f64,
    /// Quantiles of the column: when present, a value is encoded by its rank among them
    /// ([`quantile`]), otherwise (models stored before them) by its z-score.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub knots: Vec<f64>,
}

/// The fitted vocabulary and statistics. Serialisable: it is stored with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoder {
    pub config: EncoderConfig,
    /// `table.column` → column id (ids from 2; 0 is OOV, 1 the target).
    pub columns: BTreeMap<String, u32>,
    /// Quoted table name → table id (ids from 1; 0 is OOV).
    pub tables: BTreeMap<String, u32>,
    /// `table.column` → statistics of numeric columns.
    pub num_stats: BTreeMap<String, NumStats>,
    /// `table.column` → the semantic type it was read as: a numeric column that was all
    /// NULL in training has no `num_stats`, so those alone cannot say. Empty in models
    /// stored before it was recorded.
    #[serde(default)]
    pub semantics: BTreeMap<String, SemanticType>,
    /// `table.column` → the buckets of categorical values that recur across training
    /// entities ([`rare`]); any other value of that column takes its rare bucket. Columns
    /// absent here (every column of models stored before it existed) keep every bucket.
    #[serde(default)]
    pub frequent: BTreeMap<String, BTreeSet<u32>>,
}

/// A context ready for the model: flat per-token arrays plus the row structure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodedContext {
    /// Column id per token.
    pub col: Vec<u32>,
    /// [`Kind`] per token, as `u8`.
    pub kind: Vec<u8>,
    /// The number's rank score (z-score in models fitted before ranks) for `Num` tokens,
    /// 0 otherwise.
    pub num: Vec<f32>,
    /// [`TIME_FEATS`] features per token (zeros unless `Time`), row-major.
    pub time: Vec<f32>,
    /// Hash bucket for `Cat` tokens, 0/1 for `Bool` tokens, 0 otherwise.
    pub bucket: Vec<u32>,
    /// Row index per token.
    pub row: Vec<u32>,
    /// Table id per row.
    pub row_table: Vec<u32>,
    /// Parent row indices per row (only rows kept in this context).
    pub row_parents: Vec<Vec<u32>>,
    /// Hop per row.
    pub row_hop: Vec<u8>,
    /// Token index of the target token.
    pub target: usize,
    /// Training label: 0/1 (binary), the value (regression) or the class index (multiclass).
    pub label: Option<f32>,
}

impl EncodedContext {
    pub fn n_tokens(&self) -> usize {
        self.col.len()
    }
    pub fn n_rows(&self) -> usize {
        self.row_table.len()
    }
}

/// Features of a datetime relative to the anchor (see [`TIME_FEATS`]).
pub fn time_features(t: i64, anchor: i64) -> [f32; TIME_FEATS] {
    use std::f64::consts::TAU;
    let d = (t - anchor) as f64 / US_PER_DAY;
    let slog = d.signum() * d.abs().ln_1p();
    let days = t.div_euclid(86_400_000_000) as f64;
    let dow = (days + 3.0).rem_euclid(7.0) / 7.0; // 1970-01-01 was a Thursday; Monday = 0
    let year = (t as f64 / (365.2425 * US_PER_DAY)).rem_euclid(1.0);
    let hour = t.rem_euclid(86_400_000_000) as f64 / US_PER_DAY;
    [
        slog as f32,
        (TAU * dow).sin() as f32,
        (TAU * dow).cos() as f32,
        (TAU * year).sin() as f32,
        (TAU * year).cos() as f32,
        (TAU * hour).sin() as f32,
        (TAU * hour).cos() as f32,
    ]
}

/// A column as encoding its cells needs it: looked up once, not per cell.
struct Col<'e> {
    /// `table.column`.
    name: String,
    id: u32,
    stats: Option<&'e NumStats>,
    frequent: Option<&'e BTreeSet<u32>>,
}

fn col_name(table: &str, column: &str) -> String {
    format!("{table}.{column}")
}

fn encodable(sem: SemanticType) -> bool {
    !matches!(sem, SemanticType::Key | SemanticType::Unsupported)
}

impl Encoder {
    /// Fits the vocabulary and numeric statistics on training contexts only.
    pub fn fit(config: EncoderConfig, train: &[Subgraph]) -> Encoder {
        let mut columns = BTreeMap::new();
        let mut semantics = BTreeMap::new();
        let mut tables = BTreeMap::new();
        // Welford and a sample per numeric column
        let mut acc: BTreeMap<String, (f64, f64, f64, quantile::Reservoir)> = BTreeMap::new();
        let min_entities = rare::MIN_ENTITIES;
        let mut recur = rare::RecurrenceCounter::default();
        let bucketer = Encoder::empty(config.clone());
        for sg in train {
            let entity = sg
                .rows
                .get(sg.seed)
                .map_or(0, |r| crate::base::hash::fnv1a(r.key.as_bytes()));
            for r in &sg.rows {
                let n = tables.len() as u32 + 1;
                tables.entry(r.table.to_string()).or_insert(n);
                for (c, sem, v) in &r.values {
                    if !encodable(*sem) {
                        continue;
                    }
                    let name = col_name(&r.table, c);
                    let n = columns.len() as u32 + 2;
                    columns.entry(name.clone()).or_insert(n);
                    semantics.entry(name.clone()).or_insert(*sem);
                    let col = bucketer.col(name.clone());
                    if let (Kind::Cat, _, _, b) = bucketer.encode_cell(&col, *sem, v, 0) {
                        recur.add(&name, b, entity, min_entities);
                    }
                    if let (SemanticType::Numerical, Value::Num(x)) = (sem, v) {
                        if x.is_finite() {
                            let e = acc.entry(name).or_insert_with_key(|k| {
                                (0.0, 0.0, 0.0, quantile::Reservoir::new(k))
                            });
                            e.0 += 1.0;
                            let delta = x - e.1;
                            e.1 += delta / e.0;
                            e.2 += delta * (x - e.1);
                            e.3.add(*x);
                        }
                    }
                }
            }
        }
        let num_stats = acc
            .into_iter()
            .map(|(k, (n, mean, m2, sample))| {
                let std = if n > 1.0 { (m2 / n).sqrt() } else { 0.0 };
                let std = if std > 1e-12 { std } else { 1.0 };
                let knots = sample.knots();
                (k, NumStats { mean, std, knots })
            })
            .collect();
        Encoder {
            config,
            columns,
            tables,
            num_stats,
            semantics,
            frequent: recur.frequent(min_entities),
        }
    }

    /// An encoder with no vocabulary (computes buckets only).
    fn empty(config: EncoderConfig) -> Encoder {
        Encoder {
            config,
            columns: BTreeMap::new(),
            tables: BTreeMap::new(),
            num_stats: BTreeMap::new(),
            semantics: BTreeMap::new(),
            frequent: BTreeMap::new(),
        }
    }

    /// Whether column `name` was read as a number (from `num_stats` in older models).
    pub fn read_as_numeric(&self, name: &str) -> bool {
        match self.semantics.get(name) {
            Some(s) => *s == SemanticType::Numerical,
            None => self.num_stats.contains_key(name),
        }
    }

    /// The `table.column` name of column id `id` (`None` for the OOV and target ids).
    pub fn column_name(&self, id: u32) -> Option<&str> {
        self.columns
            .iter()
            .find(|(_, &v)| v == id)
            .map(|(k, _)| k.as_str())
    }

    /// Number of column ids (OOV and target included).
    pub fn n_columns(&self) -> usize {
        self.columns.len() + 2
    }

    fn column_id(&self, name: &str) -> u32 {
        self.columns.get(name).copied().unwrap_or(OOV_COLUMN)
    }

    /// What encoding the cells of column `name` (`table.column`) needs.
    fn col<'e>(&'e self, name: String) -> Col<'e> {
        Col {
            id: self.column_id(&name),
            stats: self.num_stats.get(&name),
            frequent: self.frequent.get(&name),
            name,
        }
    }

    /// The hash bucket of a categorical value: of `name=rendered`, or of the column's
    /// rare-value rendering when the fit did not see it recur.
    fn bucket(&self, col: &Col, rendered: &str) -> u32 {
        let n = self.config.n_buckets.max(1) as u64;
        let hash = |r: &str| {
            let h = crate::base::hash::fnv1a_parts(&[col.name.as_bytes(), b"=", r.as_bytes()]);
            (h % n) as u32
        };
        let b = hash(rendered);
        match col.frequent {
            Some(kept) if !kept.contains(&b) => hash(rare::RARE),
            _ => b,
        }
    }

    /// Encodes one cell of `col`: (kind, num, time features, bucket).
    fn encode_cell(
        &self,
        col: &Col,
        sem: SemanticType,
        v: &Value,
        anchor: i64,
    ) -> (Kind, f32, [f32; TIME_FEATS], u32) {
        let zero = [0.0; TIME_FEATS];
        let cat = |s: &str| (Kind::Cat, 0.0, zero, self.bucket(col, s));
        match (sem, v) {
            (_, Value::Null) => (Kind::Null, 0.0, zero, 0),
            (_, Value::Num(x)) if !x.is_finite() => (Kind::Null, 0.0, zero, 0),
            (SemanticType::Categorical | SemanticType::Text, Value::Num(x)) => cat(&x.to_string()),
            (SemanticType::Categorical | SemanticType::Text, Value::Bool(b)) => cat(&b.to_string()),
            (_, Value::Num(x)) => {
                let z = match col.stats {
                    Some(s) if !s.knots.is_empty() => quantile::rank_score(&s.knots, *x),
                    Some(s) => ((x - s.mean) / s.std).clamp(-Z_CLIP, Z_CLIP),
                    // unseen numeric column: a squashed raw value keeps the scale sane
                    None => x.signum() * x.abs().ln_1p(),
                };
                (Kind::Num, z as f32, zero, 0)
            }
            (_, Value::Bool(b)) => (Kind::Bool, 0.0, zero, *b as u32),
            (_, Value::Time(t)) => (Kind::Time, 0.0, time_features(*t, anchor), 0),
            (_, Value::Text(s)) => cat(s),
        }
    }

    /// Encodes a context. Rows are kept in order of priority (the seed row, then by hop,
    /// then newest first, then sampler order) while they fit in `max_tokens`.
    pub fn encode(&self, sg: &Subgraph) -> EncodedContext {
        self.encode_with_sources(sg, None)
    }

    /// [`Encoder::encode`], also telling where each token came from: `(subgraph row, index
    /// in that row's values)`, `None` for the target token.
    pub fn encode_traced(&self, sg: &Subgraph) -> (EncodedContext, Vec<Option<(usize, usize)>>) {
        let mut sources = Vec::new();
        let ec = self.encode_with_sources(sg, Some(&mut sources));
        (ec, sources)
    }

    fn encode_with_sources(
        &self,
        sg: &Subgraph,
        sources: Option<&mut Vec<Option<(usize, usize)>>>,
    ) -> EncodedContext {
        let rows = &sg.rows;
        let (kept, used) = self.kept_rows(sg);
        let mut new_index = vec![u32::MAX; rows.len()];
        for (n, &i) in kept.iter().enumerate() {
            new_index[i] = n as u32;
        }
        self.encode_kept(sg, &kept, used, &new_index, sources)
    }

    /// The subgraph rows an encoding keeps, in encoded row order (encoded row `n` is
    /// `sg.rows[kept[n]]`), and the tokens they take.
    pub fn kept_rows(&self, sg: &Subgraph) -> (Vec<usize>, usize) {
        let rows = &sg.rows;
        let cells = |r: &RawRow| r.values.iter().filter(|(_, s, _)| encodable(*s)).count();
        let mut order: Vec<usize> = (0..rows.len()).filter(|&i| i != sg.seed).collect();
        order.sort_by_key(|&i| {
            (
                rows[i].hop,
                std::cmp::Reverse(rows[i].time.unwrap_or(i64::MAX)),
                i,
            )
        });
        let cap = self.config.max_tokens.max(1);
        let mut kept = vec![sg.seed];
        let mut used = 1 + cells(&rows[sg.seed]); // target token + seed cells
        for i in order {
            let c = cells(&rows[i]);
            if used + c <= cap {
                used += c;
                kept.push(i);
            }
        }
        (kept, used)
    }

    fn encode_kept(
        &self,
        sg: &Subgraph,
        kept: &[usize],
        used: usize,
        new_index: &[u32],
        mut sources: Option<&mut Vec<Option<(usize, usize)>>>,
    ) -> EncodedContext {
        let rows = &sg.rows;
        let cap = self.config.max_tokens.max(1);
        let mut out = EncodedContext {
            col: Vec::with_capacity(used),
            kind: Vec::with_capacity(used),
            num: Vec::with_capacity(used),
            time: Vec::with_capacity(used * TIME_FEATS),
            bucket: Vec::with_capacity(used),
            row: Vec::with_capacity(used),
            row_table: Vec::with_capacity(kept.len()),
            row_parents: Vec::with_capacity(kept.len()),
            row_hop: Vec::with_capacity(kept.len()),
            target: 0,
            label: None,
        };
        // Column lookups once per context: names are shared by the rows of a table, so a
        // pointer pair identifies them (a copy of a name only misses, never mismatches).
        let mut cols: HashMap<(usize, usize), Col, BuildHasherDefault<Fnv>> = HashMap::default();
        for (n, &i) in kept.iter().enumerate() {
            let r = &rows[i];
            out.row_table
                .push(self.tables.get(&*r.table).copied().unwrap_or(OOV_TABLE));
            out.row_parents.push(
                r.parents
                    .iter()
                    .filter_map(|&p| new_index.get(p).copied().filter(|&x| x != u32::MAX))
                    .collect(),
            );
            out.row_hop.push(r.hop.min(MAX_HOP));
            if n == 0 {
                out.target = out.col.len();
                out.col.push(TARGET_COLUMN);
                out.kind.push(Kind::Mask as u8);
                out.num.push(0.0);
                out.time.extend_from_slice(&[0.0; TIME_FEATS]);
                out.bucket.push(0);
                out.row.push(0);
                if let Some(s) = sources.as_deref_mut() {
                    s.push(None);
                }
            }
            for (vi, (c, sem, v)) in r.values.iter().enumerate() {
                if !encodable(*sem) {
                    continue;
                }
                if out.col.len() >= cap {
                    break; // only the seed row can overflow on its own
                }
                let key = (
                    Arc::as_ptr(&r.table) as *const u8 as usize,
                    Arc::as_ptr(c) as *const u8 as usize,
                );
                let col = cols
                    .entry(key)
                    .or_insert_with(|| self.col(col_name(&r.table, c)));
                let (kind, z, tf, b) = self.encode_cell(col, *sem, v, sg.anchor);
                out.col.push(col.id);
                out.kind.push(kind as u8);
                out.num.push(z);
                out.time.extend_from_slice(&tf);
                out.bucket.push(b);
                out.row.push(n as u32);
                if let Some(s) = sources.as_deref_mut() {
                    s.push(Some((i, vi)));
                }
            }
        }
        out
    }

    /// [`Encoder::encode`] with a label attached.
    pub fn encode_labeled(&self, sg: &Subgraph, label: f32) -> EncodedContext {
        let mut e = self.encode(sg);
        e.label = Some(label);
        e
    }
}

#[cfg(test)]
mod tests;
