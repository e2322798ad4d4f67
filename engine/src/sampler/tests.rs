//! Sampler tests: inlined statements, step SQL, and assembly of fetched rows.

use super::*;
use crate::encode::Value;
use crate::schema::SchemaGraph;

#[test]
fn inlined_statements_have_no_parameters_left() {
    let reqs: Vec<Request> = (0..12)
        .map(|i| Request {
            ctx: i,
            rows: vec![0],
            anchor: 1_104_537_600_000_000, // 2005-01-01
            keys: vec![format!("k\"{i}'"), i.to_string()],
        })
        .collect();
    let sql = "SELECT * FROM unnest($1::pg_catalog.int4[], $2::pg_catalog.timestamptz[], $3::pg_catalog.text[], $4::pg_catalog.text[])";
    let s = inline_statement(sql, &reqs);
    assert!(!s.contains('$'), "{s}");
    assert!(s.starts_with("SELECT * FROM unnest('{\"0\",\"1\","), "{s}");
    assert!(s.contains("\"2005-01-01 00:00:00+00\""), "{s}");
    // a double quote is escaped for the array, a single quote doubled for the literal
    assert!(s.contains(r#""k\"11''""#), "{s}");
}
fn graph() -> SchemaGraph {
    crate::testutil::drivers_results(
        ("points", "double precision"),
        "timestamp without time zone",
    )
}

#[test]
fn child_sql_is_one_lateral_statement_with_time_bound_and_fanout() {
    let plan = Plan::new(&graph(), SamplerConfig::default());
    let sql = plan.step_sql(&plan.edges[0], Direction::ToChildren, 1);
    assert!(sql.contains("FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int4[]), pg_catalog.unnest($2::pg_catalog.timestamptz[]), pg_catalog.unnest($3::pg_catalog.text[]))"));
    assert!(sql.contains("t.driver_id OPERATOR(pg_catalog.=) u.k0::integer"));
    assert!(sql.contains("t.date OPERATOR(pg_catalog.<=) (u.anchor AT TIME ZONE 'UTC')"));
    assert!(sql.contains("ORDER BY t.date DESC, t.result_id DESC LIMIT 12"));
    // Keys are structure, not values.
    assert!(!sql.contains("rdl_v0") || sql.contains("t.points::pg_catalog.float8 AS rdl_v0"));
    let parent = plan.step_sql(&plan.edges[0], Direction::ToParent, 1);
    assert!(parent.contains(
        "FROM public.drivers AS t WHERE t.driver_id OPERATOR(pg_catalog.=) u.k0::integer) AS s"
    ));
    assert!(!parent.contains("LIMIT"));
}

#[test]
fn children_without_an_index_are_one_join_ranked_by_time() {
    let mut g = graph();
    g.foreign_keys[0].indexed = false;
    let plan = Plan::new(&g, SamplerConfig::default());
    let sql = plan.step_sql(&plan.edges[0], Direction::ToChildren, 1);
    assert!(!sql.contains("LATERAL"), "{sql}");
    assert!(sql.contains(" JOIN public.results AS t ON t.driver_id OPERATOR(pg_catalog.=) u.k0::integer AND t.date OPERATOR(pg_catalog.<=) (u.anchor AT TIME ZONE 'UTC')"), "{sql}");
    assert!(sql.contains("pg_catalog.row_number() OVER (PARTITION BY u.ord ORDER BY t.date DESC, t.result_id DESC) AS rdl_rank"), "{sql}");
    assert!(
        sql.ends_with("WHERE w.rdl_rank OPERATOR(pg_catalog.<=) 12 ORDER BY w.ord, w.rdl_rank"),
        "{sql}"
    );
    // The same columns, in the same order, as the indexed form returns.
    let tp = &plan.tables["public.results"];
    let n = 3 + tp.structural.len() + tp.values.len();
    assert_eq!(
        sql.split(" FROM (").next().unwrap().matches(", ").count() + 1,
        n
    );
    // Parents are always looked up by their (unique, so indexed) key.
    let parent = plan.step_sql(&plan.edges[0], Direction::ToParent, 1);
    assert!(parent.contains("CROSS JOIN LATERAL"));
    assert_eq!(
        plan.index_advice(),
        vec!["CREATE INDEX ON public.results (driver_id, date);".to_string()]
    );
    assert!(Plan::new(&graph(), SamplerConfig::default())
        .index_advice()
        .is_empty());
}

fn fetched(
    ord: usize,
    key: &str,
    time: Option<i64>,
    s: Vec<&str>,
    values: Vec<Value>,
) -> FetchedRow {
    FetchedRow {
        ord,
        key: key.into(),
        time,
        structural: s.into_iter().map(|x| Some(x.to_string())).collect(),
        values,
        children: None,
    }
}

#[test]
fn assembly_links_rows_visits_once_and_drops_future_rows() {
    let plan = Plan::new(&graph(), SamplerConfig::default());
    let mut a = Assembler::new(&plan, &[100, 100]);
    let seeds = a.seed_requests(&[vec!["1".into()], vec!["2".into()]]);
    assert_eq!(seeds.len(), 2);
    a.accept_seeds(
        "public.drivers",
        vec![
            fetched(0, "1", None, vec!["1"], vec![Value::Text("GB".into())]),
            fetched(1, "2", None, vec!["2"], vec![Value::Text("DE".into())]),
        ],
    );
    assert!(a.next_hop());
    let frontier = a.take_frontier();
    let edge = plan.edges[0].clone();
    let reqs = a.requests(&frontier, &edge, Direction::ToChildren);
    assert_eq!(reqs.len(), 2);
    a.accept_step(
        &edge,
        Direction::ToChildren,
        &reqs,
        vec![
            fetched(
                0,
                "10",
                Some(90),
                vec!["1"],
                vec![Value::Num(3.0), Value::Time(90)],
            ),
            fetched(
                0,
                "11",
                Some(101),
                vec!["1"],
                vec![Value::Num(9.0), Value::Time(101)],
            ),
            fetched(
                1,
                "12",
                Some(50),
                vec!["2"],
                vec![Value::Num(1.0), Value::Time(50)],
            ),
        ],
    );
    assert_eq!(a.dropped_future, 1, "a row after the anchor never enters");
    assert_eq!(a.contexts[0].rows.len(), 2);
    assert_eq!(a.contexts[0].rows[1].parents, vec![0]);
    assert_eq!(a.contexts[0].rows[1].hop, 1);
    assert_eq!(a.via[0][1].as_deref(), Some("results_driver_id_fkey"));
    // Hop 2 goes back to the parent: already visited, so only a link, no new row.
    assert!(a.next_hop());
    let frontier = a.take_frontier();
    let reqs = a.requests(&frontier, &edge, Direction::ToParent);
    a.accept_step(
        &edge,
        Direction::ToParent,
        &reqs,
        reqs.iter()
            .enumerate()
            .map(|(i, r)| fetched(i, &r.keys[0], None, vec![&r.keys[0]], vec![Value::Null]))
            .collect(),
    );
    assert_eq!(a.contexts[0].rows.len(), 2);
    assert_eq!(a.contexts[1].rows.len(), 2);
    assert!(!a.next_hop());
}

#[test]
fn counting_children_adds_one_capped_count_in_both_forms() {
    let counts = SamplerConfig {
        counts: true,
        ..SamplerConfig::default()
    };
    for indexed in [true, false] {
        let mut g = graph();
        g.foreign_keys[0].indexed = indexed;
        let plan = Plan::new(&g, counts);
        let (edge, dir) = (&plan.edges[0], Direction::ToChildren);
        assert!(plan.counts_at(dir, 1) && !plan.counts_at(dir, 2));
        assert!(!plan.counts_at(Direction::ToParent, 1));
        let sql = plan.step_sql(edge, dir, 1);
        assert_eq!(sql.matches("pg_catalog.count(*)").count(), 1, "{sql}");
        assert!(sql.contains("10000"), "{sql}");
        // Counted under the same time bound as the rows.
        assert_eq!(
            sql.matches("t.date OPERATOR(pg_catalog.<=) (u.anchor AT TIME ZONE 'UTC')")
                .count(),
            if indexed { 2 } else { 1 },
            "{sql}"
        );
        let (head, _) = sql.split_once(" FROM (").unwrap();
        assert!(head.ends_with("rdl_n"), "{head}");
        // Hop 2 and the plan without counts read no count.
        assert!(!plan.step_sql(edge, dir, 2).contains("rdl_n"));
        let plain = Plan::new(&g, SamplerConfig::default());
        assert!(!plain.step_sql(&plain.edges[0], dir, 1).contains("rdl_n"));
    }
}

#[test]
fn the_seed_row_carries_a_count_per_foreign_key() {
    let plan = Plan::new(
        &graph(),
        SamplerConfig {
            counts: true,
            ..SamplerConfig::default()
        },
    );
    let mut a = Assembler::new(&plan, &[100, 100]);
    a.accept_seeds(
        "public.drivers",
        vec![
            fetched(0, "1", None, vec!["1"], vec![Value::Null]),
            fetched(1, "2", None, vec!["2"], vec![Value::Null]),
        ],
    );
    assert!(a.next_hop());
    assert_eq!(a.hop(), 1);
    let frontier = a.take_frontier();
    let edge = plan.edges[0].clone();
    let reqs = a.requests(&frontier, &edge, Direction::ToChildren);
    let mut row = fetched(0, "10", Some(90), vec!["1"], vec![Value::Null, Value::Null]);
    row.children = Some(40);
    a.accept_step(&edge, Direction::ToChildren, &reqs, vec![row]);
    let name = count_column(&edge);
    assert!(name.starts_with(COUNT_PREFIX));
    let cell = |ctx: usize| {
        a.contexts[ctx].rows[0]
            .values
            .iter()
            .find(|(n, _, _)| **n == *name)
            .map(|c| c.2.clone())
    };
    assert_eq!(cell(0), Some(Value::Num(41f64.ln())));
    // No child at or before the anchor: a count of 0, not a missing cell.
    assert_eq!(cell(1), Some(Value::Num(0.0)));
    // Only the seed row carries counts.
    assert!(a.contexts[0].rows[1]
        .values
        .iter()
        .all(|(n, _, _)| **n != *name));
}

/// A statement's copies: SQL for the first lookups, then the heap size asked once, a copy
/// read once the lookups have cost what reading it would, none over the room left, none
/// for keys whose text is not their identity; a new statement starts over.
#[test]
fn copies_are_read_when_the_lookups_have_paid_for_them() {
    let plan = Plan::new(&graph(), SamplerConfig::default());
    let (t, cols) = ("public.results", vec!["driver_id".to_string()]);
    let slot = &plan.copy_sql(t);
    let mut c = Copies::default();
    assert!(c.enter(vec![1]));
    assert!(!c.enter(vec![1]));
    for _ in 0..LOOKUPS_BEFORE_COPY {
        assert_eq!(c.plan(slot), Use::Sql);
        c.spent(slot, 0.001);
    }
    assert_eq!(c.plan(slot), Use::Ask);
    // 1 MB: worth it after 1 MB / COPY_BYTES_PER_S of lookups.
    c.sized(slot, Some(1 << 20), 1 << 30);
    let needed = (1 << 20) as f64 / COPY_BYTES_PER_S;
    assert_eq!(c.plan(slot), Use::Sql);
    c.spent(slot, needed);
    assert_eq!(c.plan(slot), Use::Build);
    let row = fetched(0, "7", Some(10), vec!["1"], vec![]);
    c.hold(slot, Some(TableCopy::new(&plan.tables[t], vec![row])));
    assert!(c.held() > 0);
    assert_eq!(c.plan(slot), Use::Copy);
    let req = |anchor| Request {
        ctx: 0,
        rows: vec![0],
        anchor,
        keys: vec!["1".into()],
    };
    assert_eq!(
        c.lookup((slot, &plan.tables[t]), &cols, &[req(10)], 12, true)
            .len(),
        1
    );
    assert!(c
        .lookup((slot, &plan.tables[t]), &cols, &[req(9)], 12, true)
        .is_empty());
    // A new statement: nothing held; over the room: refused for the statement.
    assert!(c.enter(vec![2]));
    assert_eq!(c.held(), 0);
    for _ in 0..LOOKUPS_BEFORE_COPY {
        assert_eq!(c.plan(slot), Use::Sql);
        c.spent(slot, 10.0);
    }
    c.sized(slot, Some(1 << 20), 1 << 19);
    assert_eq!(c.plan(slot), Use::Sql);
    c.spent(slot, 10.0);
    assert_eq!(c.plan(slot), Use::Sql);
    // Keys whose text is not their identity, or a time read through a conversion.
    let mut g = graph();
    g.tables[1].columns[1].pg_type = "numeric".into();
    let p = Plan::new(&g, SamplerConfig::default());
    assert!(!copyable(&p.tables[t], &cols));
    assert!(copyable(&plan.tables[t], &cols));
    let g = crate::testutil::drivers_results(("points", "double precision"), "time with time zone");
    let p = Plan::new(&g, SamplerConfig::default());
    assert!(!copyable(&p.tables[t], &cols));
}
