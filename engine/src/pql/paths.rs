//! Foreign-key paths from an aggregated table to the entity table: every candidate, the
//! shortest one that follows the `VIA` columns, and the errors when none or several fit.

use super::ast::AggCall;
use super::error::{sqlstate, PqlError};
use super::names::{column_of, resolve_table, short};
use super::spec::FkHop;
use crate::ident::quote_ident;
use crate::schema::{ForeignKey, SchemaGraph, Table};

fn path_text(path: &[&ForeignKey], graph: &SchemaGraph) -> String {
    let mut s: Vec<String> = path
        .iter()
        .map(|fk| {
            let cols: Vec<String> = fk.columns.iter().map(|c| quote_ident(c)).collect();
            format!("{}.{}", short(graph, &fk.table), cols.join(","))
        })
        .collect();
    if let Some(last) = path.last() {
        s.push(short(graph, &last.ref_table));
    }
    s.join(" -> ")
}

/// Every simple foreign-key path from `from` to `to` of at most `max_len` hops.
fn all_paths<'g>(
    graph: &'g SchemaGraph,
    from: &str,
    to: &str,
    max_len: usize,
) -> Vec<Vec<&'g ForeignKey>> {
    fn go<'g>(
        graph: &'g SchemaGraph,
        at: &str,
        to: &str,
        max_len: usize,
        seen: &mut Vec<String>,
        cur: &mut Vec<&'g ForeignKey>,
        out: &mut Vec<Vec<&'g ForeignKey>>,
    ) {
        if out.len() > 1000 {
            return;
        }
        for fk in graph.foreign_keys.iter().filter(|fk| fk.table == at) {
            if fk.ref_table == to {
                cur.push(fk);
                out.push(cur.clone());
                cur.pop();
            } else if cur.len() + 1 < max_len && !seen.contains(&fk.ref_table) {
                seen.push(fk.ref_table.clone());
                cur.push(fk);
                go(graph, &fk.ref_table, to, max_len, seen, cur, out);
                cur.pop();
                seen.pop();
            }
        }
    }
    let mut out = Vec::new();
    let mut seen = vec![from.to_string()];
    go(
        graph,
        from,
        to,
        max_len,
        &mut seen,
        &mut Vec::new(),
        &mut out,
    );
    out
}

const MAX_PATH: usize = 6;

/// The shortest FK path from `table` to `entity` that follows the `VIA` columns in order;
/// an error when there is none or several.
pub(super) fn fk_path(
    g: &SchemaGraph,
    entity: &Table,
    table: &Table,
    call: &AggCall,
) -> Result<Vec<FkHop>, PqlError> {
    let via = via_keys(g, call)?;
    let all = all_paths(g, &table.table, &entity.table, MAX_PATH);
    let chosen = choose_path(g, entity, table, call, &via, &all)?;
    if let Some(fk) = chosen.iter().find(|fk| fk.columns.len() != 1) {
        return Err(PqlError::new(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!(
                "composite foreign keys are not supported yet ({} on {})",
                fk.name, fk.table
            ),
        )
        .at(call.arg.pos));
    }
    Ok(chosen
        .iter()
        .map(|fk| FkHop {
            constraint: fk.name.clone(),
            table: fk.table.clone(),
            columns: fk.columns.clone(),
            ref_table: fk.ref_table.clone(),
            ref_columns: fk.ref_columns.clone(),
        })
        .collect())
}

/// The foreign keys the `VIA` columns name, in order: each column must start exactly one
/// single foreign key of its table, so the path it asks for is unambiguous.
fn via_keys<'g>(g: &'g SchemaGraph, call: &AggCall) -> Result<Vec<&'g ForeignKey>, PqlError> {
    let mut via: Vec<&ForeignKey> = Vec::new();
    for v in &call.via {
        if v.star || v.parts.len() < 2 {
            return Err(PqlError::syntax(
                v.pos,
                "expected <table>.<foreign key column> after VIA",
            ));
        }
        let (tp, c) = v.parts.split_at(v.parts.len() - 1);
        let t = resolve_table(g, tp, v.pos)?;
        let col = column_of(t, &c[0])?;
        let fks: Vec<&ForeignKey> = g
            .parents_of(&t.table)
            .filter(|fk| fk.columns.first() == Some(&col.column))
            .collect();
        match fks.as_slice() {
            [] => {
                return Err(PqlError::new(
                    sqlstate::INVALID_FOREIGN_KEY,
                    format!(
                        "{}.{} is not a foreign key column",
                        t.table,
                        quote_ident(&col.column)
                    ),
                )
                .at(c[0].pos)
                .hint("VIA names the foreign key columns the path follows."))
            }
            [one] => via.push(one),
            many => {
                return Err(PqlError::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!(
                        "{}.{} starts several foreign keys ({})",
                        t.table,
                        quote_ident(&col.column),
                        many.iter()
                            .map(|f| f.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .at(c[0].pos))
            }
        }
    }
    Ok(via)
}

/// The one shortest path among `all` that contains the `via` keys in order. None is an
/// error listing the paths that exist; several is an ambiguity the user settles with VIA.
fn choose_path<'p, 'g>(
    g: &SchemaGraph,
    entity: &Table,
    table: &Table,
    call: &AggCall,
    via: &[&ForeignKey],
    all: &'p [Vec<&'g ForeignKey>],
) -> Result<&'p [&'g ForeignKey], PqlError> {
    let follows = |p: &Vec<&ForeignKey>| {
        let mut it = p.iter();
        via.iter().all(|v| it.any(|fk| std::ptr::eq(*fk, *v)))
    };
    let matching: Vec<&Vec<&ForeignKey>> = all.iter().filter(|p| follows(p)).collect();
    let Some(best) = matching.iter().map(|p| p.len()).min() else {
        let mut e = PqlError::new(
            sqlstate::INVALID_FOREIGN_KEY,
            format!(
                "no foreign-key path from {} to the entity table {}{}",
                table.table,
                entity.table,
                if via.is_empty() { "" } else { " through the VIA columns" }
            ),
        )
        .at(call.arg.pos)
        .hint(format!(
            "The aggregated table must reference {} by foreign keys, directly or through other tables.",
            entity.table
        ));
        if !via.is_empty() && !all.is_empty() {
            e = e.detail(format!(
                "Paths that exist: {}.",
                all.iter()
                    .map(|p| path_text(p, g))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        return Err(e);
    };
    let shortest: Vec<&&Vec<&ForeignKey>> = matching.iter().filter(|p| p.len() == best).collect();
    if shortest.len() > 1 {
        let cands: Vec<String> = shortest.iter().map(|p| path_text(p, g)).collect();
        let first_fk = &shortest[0][0];
        return Err(PqlError::new(
            sqlstate::AMBIGUOUS_COLUMN,
            format!(
                "ambiguous foreign-key path from {} to {}",
                table.table, entity.table
            ),
        )
        .at(call.arg.pos)
        .detail(format!("Candidates: {}.", cands.join("; ")))
        .hint(format!(
            "Name the foreign key to follow with VIA, e.g. {}({} VIA {}.{}, ...); chain hops with ->.",
            call.agg.name(),
            call.arg.display(),
            short(g, &first_fk.table),
            quote_ident(&first_fk.columns[0])
        )));
    }
    Ok(shortest[0])
}
