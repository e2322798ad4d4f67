//! Compiler tests on hand-built schema graphs (the F1 shape of RelBench, and small shops).

use super::ast::{Agg, CmpOp, Literal, Unit};
use super::*;
use crate::base::time::parse_timestamp;
use crate::ident::quote_qualified;
use crate::schema::{Column, ForeignKey, SchemaGraph, SemanticType, Table};
use crate::testutil::fk;

fn col(name: &str, pg_type: &str) -> Column {
    let semantic = match pg_type {
        "integer" | "bigint" | "double precision" | "numeric" => SemanticType::Numerical,
        "timestamp without time zone" | "timestamp with time zone" | "date" => {
            SemanticType::Timestamp
        }
        "boolean" => SemanticType::Boolean,
        "text" => SemanticType::Categorical,
        _ => SemanticType::Unsupported,
    };
    Column {
        name: name.into(),
        pg_type: pg_type.into(),
        semantic,
        nullable: true,
    }
}

fn table(
    schema: &str,
    name: &str,
    pk: &[&str],
    cols: &[(&str, &str)],
    time: Option<&str>,
) -> Table {
    Table {
        schema: schema.into(),
        name: name.into(),
        table: quote_qualified(schema, name),
        kind: "table".into(),
        primary_key: pk.iter().map(|s| s.to_string()).collect(),
        columns: cols.iter().map(|(n, t)| col(n, t)).collect(),
        time_column: time.map(String::from),
        time_source: None,
        visible: true,
    }
}

const I: &str = "integer";
const F: &str = "double precision";
const T: &str = "text";
const TS: &str = "timestamp without time zone";

/// The F1 database as `examples/f1/load.sql` creates it.
pub(crate) fn f1() -> SchemaGraph {
    let d = Some("date");
    let mut g = SchemaGraph {
        tables: vec![
            table(
                "public",
                "circuits",
                &["circuit_id"],
                &[
                    ("circuit_id", I),
                    ("name", T),
                    ("location", T),
                    ("country", T),
                    ("lat", F),
                    ("lng", F),
                    ("alt", F),
                ],
                None,
            ),
            table(
                "public",
                "drivers",
                &["driver_id"],
                &[
                    ("driver_id", I),
                    ("code", T),
                    ("forename", T),
                    ("surname", T),
                    ("dob", "date"),
                    ("nationality", T),
                ],
                None,
            ),
            table(
                "public",
                "constructors",
                &["constructor_id"],
                &[("constructor_id", I), ("name", T), ("nationality", T)],
                None,
            ),
            table(
                "public",
                "races",
                &["race_id"],
                &[
                    ("race_id", I),
                    ("year", I),
                    ("round", I),
                    ("circuit_id", I),
                    ("name", T),
                    ("date", TS),
                ],
                d,
            ),
            table(
                "public",
                "results",
                &["result_id"],
                &[
                    ("result_id", I),
                    ("race_id", I),
                    ("driver_id", I),
                    ("constructor_id", I),
                    ("number", I),
                    ("grid", I),
                    ("position", I),
                    ("position_order", I),
                    ("points", F),
                    ("laps", I),
                    ("milliseconds", "bigint"),
                    ("fastest_lap", I),
                    ("rank", I),
                    ("fastest_lap_speed", F),
                    ("status_id", I),
                    ("date", TS),
                ],
                d,
            ),
            table(
                "public",
                "driver_standings",
                &["driver_standings_id"],
                &[
                    ("driver_standings_id", I),
                    ("race_id", I),
                    ("driver_id", I),
                    ("points", F),
                    ("position", I),
                    ("wins", I),
                    ("date", TS),
                ],
                d,
            ),
            table(
                "public",
                "constructor_results",
                &["constructor_results_id"],
                &[
                    ("constructor_results_id", I),
                    ("race_id", I),
                    ("constructor_id", I),
                    ("points", F),
                    ("status", T),
                    ("date", TS),
                ],
                d,
            ),
            table(
                "public",
                "constructor_standings",
                &["constructor_standings_id"],
                &[
                    ("constructor_standings_id", I),
                    ("race_id", I),
                    ("constructor_id", I),
                    ("points", F),
                    ("position", I),
                    ("wins", I),
                    ("date", TS),
                ],
                d,
            ),
            table(
                "public",
                "qualifying",
                &["qualify_id"],
                &[
                    ("qualify_id", I),
                    ("race_id", I),
                    ("driver_id", I),
                    ("constructor_id", I),
                    ("number", I),
                    ("position", I),
                    ("q1", T),
                    ("q2", T),
                    ("q3", T),
                    ("date", TS),
                ],
                d,
            ),
        ],
        foreign_keys: vec![
            fk("races", "circuit_id", "circuits", "circuit_id"),
            fk("results", "race_id", "races", "race_id"),
            fk("results", "driver_id", "drivers", "driver_id"),
            fk(
                "results",
                "constructor_id",
                "constructors",
                "constructor_id",
            ),
            fk("driver_standings", "race_id", "races", "race_id"),
            fk("driver_standings", "driver_id", "drivers", "driver_id"),
            fk("constructor_results", "race_id", "races", "race_id"),
            fk(
                "constructor_results",
                "constructor_id",
                "constructors",
                "constructor_id",
            ),
            fk("constructor_standings", "race_id", "races", "race_id"),
            fk(
                "constructor_standings",
                "constructor_id",
                "constructors",
                "constructor_id",
            ),
            fk("qualifying", "race_id", "races", "race_id"),
            fk("qualifying", "driver_id", "drivers", "driver_id"),
            fk(
                "qualifying",
                "constructor_id",
                "constructors",
                "constructor_id",
            ),
        ],
        warnings: vec![],
        unreadable: Vec::new(),
    };
    g.finish();
    g
}

/// A shop: customers ← orders ← order_items → products; flights with two airport FKs.
fn shop() -> SchemaGraph {
    let mut g = SchemaGraph {
        tables: vec![
            table(
                "public",
                "customers",
                &["customer_id"],
                &[
                    ("customer_id", I),
                    ("segment", T),
                    ("vip", "boolean"),
                    ("age", I),
                    ("created_at", "timestamp with time zone"),
                ],
                Some("created_at"),
            ),
            table(
                "public",
                "orders",
                &["order_id"],
                &[
                    ("order_id", I),
                    ("customer_id", I),
                    ("buyer_id", I),
                    ("status", T),
                    ("placed", "date"),
                ],
                Some("placed"),
            ),
            table(
                "public",
                "order_items",
                &["item_id"],
                &[
                    ("item_id", I),
                    ("order_id", I),
                    ("product_id", I),
                    ("amount", "numeric"),
                    ("ts", "timestamp with time zone"),
                ],
                Some("ts"),
            ),
            table(
                "public",
                "products",
                &["product_id"],
                &[("product_id", I), ("name", T)],
                None,
            ),
            table("public", "airports", &["id"], &[("id", I)], None),
            table(
                "public",
                "flights",
                &["id"],
                &[("id", I), ("origin_id", I), ("dest_id", I), ("at", TS)],
                Some("at"),
            ),
            table("public", "nopk", &[], &[("x", I)], None),
            table("public", "pair", &["a", "b"], &[("a", I), ("b", I)], None),
            table(
                "public",
                "pair_events",
                &["id"],
                &[("id", I), ("a", I), ("b", I), ("at", TS)],
                Some("at"),
            ),
            table(
                "public",
                "static_facts",
                &["id"],
                &[("id", I), ("customer_id", I)],
                None,
            ),
            table(
                "Sales",
                "Order Items",
                &["ID"],
                &[
                    ("ID", I),
                    ("Customer", I),
                    ("Amount", "numeric"),
                    ("When", TS),
                ],
                Some("When"),
            ),
        ],
        foreign_keys: vec![
            fk("orders", "customer_id", "customers", "customer_id"),
            fk("order_items", "order_id", "orders", "order_id"),
            fk("order_items", "product_id", "products", "product_id"),
            fk("flights", "origin_id", "airports", "id"),
            fk("flights", "dest_id", "airports", "id"),
            fk("static_facts", "customer_id", "customers", "customer_id"),
            ForeignKey {
                name: "pair_fk".into(),
                table: "public.pair_events".into(),
                columns: vec!["a".into(), "b".into()],
                ref_table: "public.pair".into(),
                ref_columns: vec!["a".into(), "b".into()],
                indexed: true,
            },
            ForeignKey {
                name: "oi_customer".into(),
                table: "\"Sales\".\"Order Items\"".into(),
                columns: vec!["Customer".into()],
                ref_table: "public.customers".into(),
                ref_columns: vec!["customer_id".into()],
                indexed: true,
            },
        ],
        warnings: vec![],
        unreadable: Vec::new(),
    };
    // A second path orders.buyer_id → customers makes order_items → customers ambiguous.
    g.foreign_keys
        .push(fk("orders", "buyer_id", "customers", "customer_id"));
    g.finish();
    g
}

fn relbench() -> AnchorOptions {
    AnchorOptions::from_json(&serde_json::json!({
        "val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"
    }))
    .unwrap()
}

fn ok(g: &SchemaGraph, q: &str) -> TaskSpec {
    compile(q, g, &AnchorOptions::default()).unwrap_or_else(|e| panic!("{q}\n{e}"))
}

fn err(g: &SchemaGraph, q: &str) -> PqlError {
    compile(q, g, &AnchorOptions::default()).expect_err(q)
}

pub(crate) const DNF: &str = "PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0 FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0";
pub(crate) const TOP3: &str = "PREDICT MIN(qualifying.position, 0, 30, days) <= 3 FOR EACH drivers.driver_id ASSUMING COUNT(qualifying.*, 0, 30, days) > 0";
pub(crate) const POSITION: &str = "PREDICT AVG(results.position_order, 0, 60, days) FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 60, days) > 0";

#[test]
fn f1_driver_dnf_spec_and_sql() {
    let g = f1();
    let s = compile(DNF, &g, &relbench()).unwrap();
    assert_eq!(s.task_type, TaskType::BinaryClassification);
    assert_eq!(s.entity.table, "public.drivers");
    assert_eq!(s.entity.key_column, "driver_id");
    assert_eq!(s.entity.key_type, "integer");
    let Target::Aggregate(a) = &s.target else {
        panic!()
    };
    assert_eq!(a.agg, Agg::Count);
    assert_eq!(a.table, "public.results");
    assert!(a.column.is_none());
    assert!(a.row_filter.is_some());
    assert_eq!(a.path.len(), 1);
    assert_eq!(a.path[0].columns, ["driver_id"]);
    assert_eq!(
        s.window,
        Some(Window {
            start: 0,
            end: 30,
            unit: Unit::Days
        })
    );
    assert_eq!(
        s.comparison,
        Some(Comparison {
            op: CmpOp::Gt,
            value: Literal::Number("0".into())
        })
    );
    assert_eq!(s.time_columns.len(), 1);
    assert_eq!(s.time_columns[0].column, "date");
    // Literal values are parameters, numbered as generated: > $2 (target), > $3
    // (assuming), status_id != $4.
    assert_eq!(s.params, ["0", "0", "1"]);
    let sql = s.label_sql();
    assert!(
        sql.contains("pg_catalog.unnest($1::pg_catalog.timestamptz[])"),
        "{sql}"
    );
    assert!(
        sql.contains("t0.date OPERATOR(pg_catalog.>) (a.anchor_time AT TIME ZONE 'UTC')"),
        "{sql}"
    );
    assert!(
        sql.contains("t0.date OPERATOR(pg_catalog.<=) ((a.anchor_time AT TIME ZONE 'UTC') OPERATOR(pg_catalog.+) interval '30 days')"),
        "{sql}"
    );
    assert!(
        sql.contains("(t0.status_id OPERATOR(pg_catalog.<>) CAST($4::pg_catalog.text AS pg_catalog.numeric))"),
        "{sql}"
    );
    // Two CTEs: the filtered count, and the unfiltered one for ASSUMING.
    assert!(sql.contains("s0 AS (") && sql.contains("s1 AS ("), "{sql}");
    assert!(!sql.contains("s2 AS ("), "{sql}");
    assert!(sql.contains("CROSS JOIN public.drivers e"), "{sql}");
    // ASSUMING in positive position uses the bare count (lets the planner inner-join).
    assert!(
        sql.contains(
            "(s1.v0 OPERATOR(pg_catalog.>) CAST($3::pg_catalog.text AS pg_catalog.numeric))"
        ),
        "{sql}"
    );
    assert!(
        sql.contains("CASE WHEN COALESCE(s0.v0, 0) OPERATOR(pg_catalog.>) CAST($2::pg_catalog.text AS pg_catalog.numeric) THEN 1 ELSE 0 END::pg_catalog.float8 AS label"),
        "{sql}"
    );
    assert!(
        sql.ends_with("ORDER BY a.anchor_time, e.driver_id"),
        "{sql}"
    );
    assert!(s
        .labels_at_sql()
        .contains("SELECT $1::pg_catalog.timestamptz AS anchor_time"));
    // Round trip through JSON.
    let j = serde_json::to_value(&s).unwrap();
    assert_eq!(j["task_type"], "binary_classification");
    // The statements are not stored: they are generated again on load.
    assert!(j.get("sql").is_none() && j.get("sql_at").is_none());
    let crate::pql::Stored::Current(back) = crate::pql::load_stored(j).unwrap() else {
        panic!("a current spec reads as current")
    };
    assert_eq!(*back, s);
}

#[test]
fn f1_top3_and_position() {
    let g = f1();
    let s = compile(TOP3, &g, &relbench()).unwrap();
    assert_eq!(s.task_type, TaskType::BinaryClassification);
    let sql = s.label_sql();
    assert!(sql.contains("pg_catalog.min(t0.position) AS v0"), "{sql}");
    assert!(sql.contains("FROM public.qualifying t0"), "{sql}");
    // Each row meets only the anchors whose window can hold it (binary search), then
    // the exact window.
    assert!(sql.contains("pg_catalog.generate_series(pg_catalog.width_bucket(((t0.date OPERATOR(pg_catalog.+) interval '-31 days') AT TIME ZONE 'UTC'), l.arr) OPERATOR(pg_catalog.+) 1, pg_catalog.width_bucket(((t0.date OPERATOR(pg_catalog.+) interval '1 days') AT TIME ZONE 'UTC'), l.arr))"), "{sql}");
    assert!(sql.contains("AND t0.date OPERATOR(pg_catalog.>) (a.anchor_time AT TIME ZONE 'UTC') AND t0.date OPERATOR(pg_catalog.<=) ((a.anchor_time AT TIME ZONE 'UTC') OPERATOR(pg_catalog.+) interval '30 days')"), "{sql}");
    // One anchor (a prediction's label) needs no search.
    assert!(s
        .labels_at_sql()
        .contains("FROM anchors a\n  JOIN public.qualifying t0 ON t0.date"));
    assert!(
        sql.contains("CASE WHEN s0.v0 OPERATOR(pg_catalog.<=) CAST($2::pg_catalog.text AS pg_catalog.numeric)"),
        "{sql}"
    );

    let s = compile(POSITION, &g, &relbench()).unwrap();
    assert_eq!(s.task_type, TaskType::Regression);
    let sql = s.label_sql();
    // AVG and the ASSUMING COUNT share one scan of results.
    assert!(
        sql.contains("pg_catalog.avg(t0.position_order) AS v0, pg_catalog.count(*) AS v1"),
        "{sql}"
    );
    assert!(!sql.contains("s1 AS ("), "{sql}");
    assert!(sql.contains("(s0.v0)::pg_catalog.float8 AS label"), "{sql}");
    assert!(sql.contains("s0.v0 IS NOT NULL"), "{sql}");
    let sp = s
        .splits(
            parse_timestamp("1950-05-13").unwrap(),
            parse_timestamp("2026-03-08").unwrap(),
        )
        .unwrap();
    assert_eq!((sp.val.len(), sp.test.len()), (30, 40));
}

#[test]
fn entity_filter_over_the_past() {
    let g = f1();
    let s = ok(
        &g,
        "PREDICT COUNT(results.*, 0, 30, days) FOR EACH drivers.driver_id \
                    WHERE COUNT(results.*, -365, 0, days) > 0 AND drivers.nationality = 'British'",
    );
    let sql = s.label_sql();
    assert!(sql.contains("interval '-365 days'"), "{sql}");
    assert!(
        sql.contains(
            "(e.nationality OPERATOR(pg_catalog.=) CAST($3::pg_catalog.text AS pg_catalog.text))"
        ),
        "{sql}"
    );
    // NOT flips polarity: the count is COALESCEd so "no rows" means true.
    let s = ok(
        &g,
        "PREDICT COUNT(results.*, 0, 30, days) FOR EACH drivers.driver_id \
                    WHERE NOT COUNT(results.*, -365, 0, days) > 0",
    );
    assert!(
        s.label_sql()
            .contains("(NOT (COALESCE(s1.v0, 0) OPERATOR(pg_catalog.>) "),
        "{}",
        s.label_sql()
    );
    let e = err(
        &g,
        "PREDICT COUNT(results.*, 0, 30, days) FOR EACH drivers.driver_id \
                     WHERE COUNT(results.*, 0, 30, days) > 0",
    );
    assert_eq!(e.sqlstate, "22023");
    assert!(e.hint.unwrap().contains("ASSUMING"));
}

#[test]
fn task_types() {
    let g = f1();
    assert_eq!(
        ok(
            &g,
            "PREDICT SUM(results.points, 0, 30, days) FOR EACH drivers.driver_id"
        )
        .task_type,
        TaskType::Regression
    );
    assert_eq!(
        ok(
            &g,
            "PREDICT EXISTS(results.*, 0, 30, days) FOR EACH drivers.driver_id"
        )
        .task_type,
        TaskType::BinaryClassification
    );
    assert_eq!(
        ok(
            &g,
            "PREDICT COUNT_DISTINCT(results.race_id, 0, 30, days) FOR EACH drivers.driver_id"
        )
        .task_type,
        TaskType::Regression
    );
    let s = ok(
        &g,
        "PREDICT LAST(results.points, 0, 2, months) FOR EACH drivers.driver_id",
    );
    assert!(
        s.label_sql()
            .contains("ORDER BY t0.date DESC, t0.result_id DESC))[1]"),
        "{}",
        s.label_sql()
    );
    assert!(s.label_sql().contains("interval '2 months'"));
    assert_eq!(
        ok(&g, "PREDICT drivers.nationality FOR EACH drivers.driver_id").task_type,
        TaskType::MulticlassClassification
    );
    let s = ok(&g, "PREDICT drivers.nationality FOR EACH drivers.driver_id");
    assert_eq!(s.label_type, "text");
    assert!(s.window.is_none());
    let s = ok(&g, "PREDICT circuits.alt FOR EACH circuits.circuit_id");
    assert_eq!(s.task_type, TaskType::Regression);
    let shop = shop();
    let s = ok(
        &shop,
        "PREDICT customers.vip FOR EACH customers.customer_id",
    );
    assert_eq!(s.task_type, TaskType::BinaryClassification);
    // A timed entity table: only entities that exist at the anchor.
    assert!(
        s.label_sql()
            .contains("e.created_at OPERATOR(pg_catalog.<=) ((a.anchor_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"),
        "{}",
        s.label_sql()
    );
    let s = ok(&shop, "PREDICT LAST(orders.status VIA orders.buyer_id, 0, 1, weeks) FOR EACH customers.customer_id");
    assert_eq!(s.task_type, TaskType::MulticlassClassification);
    let s = ok(&shop, "PREDICT LAST(orders.status VIA orders.customer_id, 0, 1, weeks) = 'returned' FOR EACH customers.customer_id");
    assert_eq!(s.task_type, TaskType::BinaryClassification);
    assert!(s
        .label_sql()
        .contains("CAST($2::pg_catalog.text AS pg_catalog.text)"));
}

#[test]
fn ranking() {
    let g = shop();
    let s = ok(&g, "PREDICT LIST_DISTINCT(order_items.product_id VIA order_items.order_id -> orders.customer_id, 0, 7, days) RANK TOP 10 FOR EACH customers.customer_id");
    assert_eq!(s.task_type, TaskType::Ranking);
    assert_eq!(s.label_type, "text[]");
    let Target::ListDistinct {
        item_table,
        k,
        aggregate,
    } = &s.target
    else {
        panic!()
    };
    assert_eq!((item_table.as_str(), *k), ("public.products", 10));
    assert_eq!(aggregate.path.len(), 2);
    let sql = s.label_sql();
    assert!(
        sql.contains("pg_catalog.array_agg(DISTINCT (t0.product_id)::pg_catalog.text ORDER BY (t0.product_id)::pg_catalog.text)"),
        "{sql}"
    );
    assert!(sql.contains("AS labels"), "{sql}");
    assert!(
        sql.contains("JOIN public.orders t1 ON t1.order_id OPERATOR(pg_catalog.=) t0.order_id"),
        "{sql}"
    );
    assert!(sql.contains("t1.customer_id AS entity_key"), "{sql}");
    // timestamptz time column: anchor arithmetic on the UTC clock, column bare.
    assert!(sql.contains("t0.ts OPERATOR(pg_catalog.<=) (((a.anchor_time AT TIME ZONE 'UTC') OPERATOR(pg_catalog.+) interval '7 days') AT TIME ZONE 'UTC')"), "{sql}");
    let e = err(&g, "PREDICT LIST_DISTINCT(order_items.amount VIA order_items.order_id -> orders.customer_id, 0, 7, days) RANK TOP 10 FOR EACH customers.customer_id");
    assert_eq!(e.sqlstate, "42P10");
}

#[test]
fn fk_paths_multi_hop_ambiguous_and_via() {
    let g = shop();
    // order_items → orders → customers twice (customer_id, buyer_id): ambiguous.
    let e = err(
        &g,
        "PREDICT SUM(order_items.amount, 0, 30, days) FOR EACH customers.customer_id",
    );
    assert_eq!(e.sqlstate, "42702");
    let d = e.detail.clone().unwrap();
    assert!(
        d.contains("order_items.order_id -> orders.customer_id -> customers"),
        "{d}"
    );
    assert!(
        d.contains("order_items.order_id -> orders.buyer_id -> customers"),
        "{d}"
    );
    assert!(e.hint.unwrap().contains("VIA"));
    assert_eq!(e.position, Some(13));
    let s = ok(&g, "PREDICT SUM(order_items.amount VIA orders.buyer_id, 0, 30, days) FOR EACH customers.customer_id");
    let Target::Aggregate(a) = &s.target else {
        panic!()
    };
    assert_eq!(
        a.path
            .iter()
            .map(|h| h.columns[0].as_str())
            .collect::<Vec<_>>(),
        ["order_id", "buyer_id"]
    );
    assert!(s.label_sql().contains("COALESCE(s0.v0, 0)"));
    // Date time column: compared with the UTC timestamp directly.
    let s = ok(&g, "PREDICT COUNT(orders.* VIA orders.customer_id, 0, 30, days) FOR EACH customers.customer_id");
    assert!(s
        .label_sql()
        .contains("t0.placed OPERATOR(pg_catalog.>) (a.anchor_time AT TIME ZONE 'UTC')"));
    // Two FKs to the same table.
    let e = err(
        &g,
        "PREDICT COUNT(flights.*, 0, 1, days) FOR EACH airports.id",
    );
    assert_eq!(e.sqlstate, "42702");
    ok(
        &g,
        "PREDICT COUNT(flights.* VIA flights.dest_id, 0, 1, days) FOR EACH airports.id",
    );
    // VIA on a non-FK column, VIA that excludes every path.
    assert_eq!(
        err(
            &g,
            "PREDICT COUNT(flights.* VIA flights.at, 0, 1, days) FOR EACH airports.id"
        )
        .sqlstate,
        "42830"
    );
    assert_eq!(
        err(
            &g,
            "PREDICT COUNT(flights.* VIA orders.customer_id, 0, 1, days) FOR EACH airports.id"
        )
        .sqlstate,
        "42830"
    );
    // No path at all.
    let e = err(
        &g,
        "PREDICT COUNT(flights.*, 0, 1, days) FOR EACH customers.customer_id",
    );
    assert_eq!(e.sqlstate, "42830");
    // Composite FK.
    assert_eq!(
        err(
            &g,
            "PREDICT COUNT(pair_events.*, 0, 1, days) FOR EACH pair.a"
        )
        .sqlstate,
        "0A000"
    );
}

#[test]
fn quoted_and_schema_qualified_names() {
    let g = shop();
    let s = ok(&g, "PREDICT SUM(\"Sales\".\"Order Items\".\"Amount\" WHERE \"Amount\" > 10, 0, 12, hours) FOR EACH customers.customer_id");
    let sql = s.label_sql();
    assert!(
        sql.contains("FROM \"Sales\".\"Order Items\" t0\n")
            && sql.contains("AND t0.\"When\" OPERATOR(pg_catalog.>)"),
        "{sql}"
    );
    assert!(sql.contains("pg_catalog.sum(t0.\"Amount\")"), "{sql}");
    assert!(sql.contains("t0.\"Customer\" AS entity_key"), "{sql}");
    assert!(sql.contains("interval '12 hours'"), "{sql}");
    let e = err(&g, "PREDICT SUM(\"Sales\".\"Order Items\".amount, 0, 12, hours) FOR EACH customers.customer_id");
    assert_eq!(e.sqlstate, "42703");
    assert!(e.hint.unwrap().contains("\"Amount\""));
    let e = err(&g, "PREDICT SUM(\"sales\".\"Order Items\".\"Amount\", 0, 12, hours) FOR EACH customers.customer_id");
    assert_eq!(e.sqlstate, "42P01");
}

#[test]
fn errors_by_sqlstate() {
    let g = f1();
    let cases: &[(&str, &str, Option<usize>)] = &[
        ("PREDICT COUNT(result.*, 0, 30, days) FOR EACH drivers.driver_id", "42P01", Some(15)),
        ("PREDICT COUNT(results.*, 0, 30, days) FOR EACH driver.driver_id", "42P01", Some(48)),
        ("PREDICT AVG(results.pos, 0, 30, days) FOR EACH drivers.driver_id", "42703", Some(21)),
        ("PREDICT COUNT(results.*, 0, 30, days) FOR EACH drivers.code", "42P10", Some(56)),
        ("PREDICT COUNT(results.*, 30, 30, days) FOR EACH drivers.driver_id", "22023", Some(26)),
        ("PREDICT COUNT(results.*, -30, 0, days) FOR EACH drivers.driver_id", "22023", Some(26)),
        ("PREDICT AVG(qualifying.q1, 0, 30, days) FOR EACH drivers.driver_id", "42804", Some(13)),
        ("PREDICT SUM(results.*, 0, 30, days) FOR EACH drivers.driver_id", "42601", Some(13)),
        ("PREDICT COUNT(results.*, 0, 30, days) > 'x' FOR EACH drivers.driver_id", "42804", None),
        ("PREDICT COUNT(results.*, 0, 30, days) > NULL FOR EACH drivers.driver_id", "42804", None),
        ("PREDICT COUNT(results.* WHERE drivers.code = 'HAM', 0, 30, days) FOR EACH drivers.driver_id", "0A000", None),
        ("PREDICT COUNT(results.* WHERE COUNT(qualifying.*, 0, 1, days) > 0, 0, 30, days) FOR EACH drivers.driver_id", "0A000", None),
        ("PREDICT COUNT(results.*, 0, 30, days) FOR EACH drivers.driver_id WHERE results.grid > 1", "0A000", None),
        ("PREDICT COUNT(results.*, 0, 30, days) FOR EACH drivers.driver_id WHERE drivers.code", "42804", None),
        ("PREDICT COUNT(results.*, 0, 30, days) FOR EACH drivers.driver_id WHERE drivers.code = 1", "42804", None),
        ("PREDICT COUNT(drivers.*, 0, 30, days) FOR EACH drivers.driver_id", "0A000", None),
        ("PREDICT drivers.dob FOR EACH drivers.driver_id", "42804", None),
        ("PREDICT drivers.driver_id FOR EACH drivers.driver_id", "42P10", None),
        ("PREDICT results.points FOR EACH drivers.driver_id", "0A000", None),
        ("PREDICT COUNT(results.*, 0, 30, days) FOR EACH driver_id", "42601", None),
    ];
    for (q, state, pos) in cases {
        let e = err(&g, q);
        assert_eq!(e.sqlstate, *state, "{q}: {e}");
        if pos.is_some() {
            assert_eq!(e.position, *pos, "{q}: {e}");
        }
    }
    let shop = shop();
    // No time column on the aggregated table.
    let e = err(
        &shop,
        "PREDICT COUNT(static_facts.*, 0, 1, days) FOR EACH customers.customer_id",
    );
    assert_eq!(e.sqlstate, "55000");
    assert!(e.hint.unwrap().contains("rdl_set_time_column"));
    // Entity tables without a (single-column) primary key.
    assert_eq!(
        err(&shop, "PREDICT nopk.x FOR EACH nopk.x").sqlstate,
        "42P10"
    );
    assert_eq!(
        err(
            &shop,
            "PREDICT COUNT(pair_events.*, 0, 1, days) FOR EACH pair.a"
        )
        .sqlstate,
        "0A000"
    );
    // Options.
    let bad = AnchorOptions {
        eval_windows: Some(0),
        ..Default::default()
    };
    assert_eq!(compile(DNF, &g, &bad).unwrap_err().sqlstate, "22023");
    // Display shows DETAIL and HINT like psql.
    let e = err(
        &shop,
        "PREDICT COUNT(flights.*, 0, 1, days) FOR EACH airports.id",
    );
    let text = e.to_string();
    assert!(
        text.starts_with("ambiguous foreign-key path")
            && text.contains("\nDETAIL:  ")
            && text.contains("\nHINT:  "),
        "{text}"
    );
}

#[test]
fn time_range() {
    let sql = time_range_sql(&f1());
    assert_eq!(sql.matches("UNION ALL").count(), 5);
    assert!(sql.contains("SELECT pg_catalog.min(date) AT TIME ZONE 'UTC' AS lo, pg_catalog.max(date) AT TIME ZONE 'UTC' AS hi FROM public.races"), "{sql}");
    let sql = time_range_sql(&shop());
    assert!(sql.contains("pg_catalog.min(created_at) AS lo"), "{sql}");
    assert!(
        sql.contains("pg_catalog.min(placed)::timestamp AT TIME ZONE 'UTC'"),
        "{sql}"
    );
    assert!(sql.contains("FROM \"Sales\".\"Order Items\""), "{sql}");
    assert!(time_range_sql(&SchemaGraph::default()).contains("NULL::pg_catalog.timestamptz"));
}

#[test]
fn a_table_the_caller_may_not_read_is_permission_denied_not_missing() {
    let mut g = f1();
    g.unreadable
        .push(("public".into(), "pit_stops".into(), true));
    let opts = AnchorOptions::default();
    let e = compile(
        "PREDICT COUNT(pit_stops.*, 0, 30, days) > 0 FOR EACH drivers.driver_id",
        &g,
        &opts,
    )
    .unwrap_err();
    assert_eq!(e.sqlstate, "42501", "{e:?}");
    assert!(e.message.contains("public.pit_stops"), "{}", e.message);
    let e = compile(
        "PREDICT COUNT(public.pit_stops.*, 0, 30, days) > 0 FOR EACH drivers.driver_id",
        &g,
        &opts,
    )
    .unwrap_err();
    assert_eq!(e.sqlstate, "42501");
    // A name that exists nowhere is still "does not exist".
    let e = compile(
        "PREDICT COUNT(lap_times.*, 0, 30, days) > 0 FOR EACH drivers.driver_id",
        &g,
        &opts,
    )
    .unwrap_err();
    assert_eq!(e.sqlstate, "42P01");
}

#[test]
fn ranking_interactions_sql() {
    let g = shop();
    let s = ok(&g, "PREDICT LIST_DISTINCT(order_items.product_id VIA order_items.order_id -> orders.customer_id WHERE order_items.amount > 5, 0, 7, days) RANK TOP 10 FOR EACH customers.customer_id");
    let (sql, params) = crate::pql::interactions_sql(&s, false).unwrap();
    assert_eq!(params, s.params, "the same literals, in the same order");
    assert!(
        sql.contains("(t1.customer_id)::pg_catalog.text AS entity_id, (t0.product_id)::pg_catalog.text AS item_id"),
        "{sql}"
    );
    assert!(
        sql.contains("JOIN public.orders t1 ON t1.order_id OPERATOR(pg_catalog.=) t0.order_id"),
        "{sql}"
    );
    // only the past: the anchor itself, no window
    assert!(
        sql.contains(
            "t0.ts OPERATOR(pg_catalog.<=) ((a.anchor_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"
        ),
        "{sql}"
    );
    assert!(sql.contains("$2::pg_catalog.text"), "{sql}");
    assert!(!sql.contains("$3"), "{sql}");
    let (one, _) = crate::pql::interactions_sql(&s, true).unwrap();
    assert!(
        one.ends_with(
            "AND t1.customer_id OPERATOR(pg_catalog.=) CAST($3::pg_catalog.text AS integer)"
        ),
        "{one}"
    );
    let b = ok(
        &g,
        "PREDICT COUNT(orders.* VIA orders.customer_id, 0, 7, days) FOR EACH customers.customer_id",
    );
    assert!(crate::pql::interactions_sql(&b, false).is_none());
}

/// Every statement rdl generates — labels, interactions, time range, the sampler's — names
/// every function, operator and type with its schema (or by a key word the grammar
/// resolves): nothing is looked up through the search path of whoever runs it.
#[test]
fn generated_sql_resolves_no_name_through_the_search_path() {
    use crate::ident::unqualified_names;
    use crate::sampler::{Direction, Plan, SamplerConfig};
    let check = |what: &str, sql: &str| {
        let names = unqualified_names(sql);
        assert!(names.is_empty(), "{what}: {names:?} in\n{sql}");
    };
    let queries = [
        DNF,
        TOP3,
        POSITION,
        "PREDICT LIST_DISTINCT(results.constructor_id, 0, 1, months) RANK TOP 5 FOR EACH drivers.driver_id",
        "PREDICT drivers.nationality FOR EACH drivers.driver_id WHERE NOT COUNT(results.*, -1, 0, months) > 0 OR drivers.code IS NULL",
        "PREDICT LAST(results.points, 0, 2, weeks) FOR EACH drivers.driver_id WHERE EXISTS(qualifying.*, -48, 0, hours)",
        "PREDICT FIRST(results.grid, 0, 30, days) = '1' FOR EACH drivers.driver_id",
        "PREDICT COUNT_DISTINCT(results.race_id WHERE (results.position IS NOT NULL AND results.points >= 1.5) OR NOT results.grid < 3, 0, 90, days) FOR EACH drivers.driver_id",
        "PREDICT SUM(constructor_results.points WHERE constructor_results.status = 'D', 0, 1, months) FOR EACH constructors.constructor_id WHERE constructors.nationality != 'British'",
        "PREDICT AVG(results.points, 0, 30, days) <= 3 FOR EACH drivers.driver_id",
        "PREDICT MAX(results.points, 0, 30, days) FOR EACH drivers.driver_id",
    ];
    let g = f1();
    for q in queries {
        let s = compile(q, &g, &relbench()).unwrap();
        check(q, s.label_sql());
        check(q, s.labels_at_sql());
        for one in [false, true] {
            if let Some((sql, _)) = crate::pql::interactions_sql(&s, one) {
                check(q, &sql);
            }
        }
    }
    let shop = shop();
    let s = ok(&shop, "PREDICT LIST_DISTINCT(order_items.product_id VIA order_items.order_id -> orders.customer_id, 0, 7, days) RANK TOP 10 FOR EACH customers.customer_id");
    check("shop ranking", s.label_sql());
    for graph in [&g, &shop] {
        check("time range", &time_range_sql(graph));
        let counts = SamplerConfig {
            counts: true,
            ..SamplerConfig::default()
        };
        // Both forms of a children lookup: with an index on the key and without one.
        let mut unindexed = (*graph).clone();
        unindexed
            .foreign_keys
            .iter_mut()
            .for_each(|fk| fk.indexed = false);
        for graph in [graph, &unindexed] {
            let plan = Plan::new(graph, counts);
            for (name, tp) in &plan.tables {
                if !tp.key_columns.is_empty() {
                    check(name, &plan.seed_sql(name));
                }
            }
            for e in &plan.edges {
                for d in [Direction::ToParent, Direction::ToChildren] {
                    for hop in [1, 2] {
                        check(&e.name, &plan.step_sql(e, d, hop));
                    }
                }
            }
        }
    }
}
