#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn graph() -> serde_json::Value {
        Spi::get_one::<pgrx::JsonB>("SELECT rdl_schema_graph(ARRAY['rdl_t'])")
            .unwrap()
            .unwrap()
            .0
    }

    fn table<'a>(g: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
        g["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == name)
            .unwrap_or_else(|| panic!("table {name} missing"))
    }

    fn setup() {
        Spi::run(
            r#"
            CREATE SCHEMA rdl_t;
            CREATE TABLE rdl_t.customers (id int PRIMARY KEY, name text, signup date);
            CREATE TABLE rdl_t."Order Items" (
                order_id int, line int, customer_id int REFERENCES rdl_t.customers,
                amount numeric, created_at timestamptz, updated_at timestamptz,
                PRIMARY KEY (order_id, line));
            CREATE TABLE rdl_t.emp (id uuid PRIMARY KEY, manager_id uuid REFERENCES rdl_t.emp, born date);
            CREATE TABLE rdl_t.nokey (x int, y bool);
            "#,
        )
        .unwrap();
    }

    #[pg_test]
    fn graph_reads_keys_types_and_time() {
        setup();
        let g = graph();
        assert_eq!(g["tables"].as_array().unwrap().len(), 4);
        let c = table(&g, "rdl_t.customers");
        assert_eq!(c["primary_key"], serde_json::json!(["id"]));
        assert_eq!(c["time_column"], "signup");
        let o = table(&g, "rdl_t.\"Order Items\"");
        assert_eq!(o["primary_key"], serde_json::json!(["order_id", "line"]));
        assert_eq!(o["time_column"], "created_at");
        let e = table(&g, "rdl_t.emp");
        assert!(
            e["time_column"].is_null(),
            "a birth date is not a time column"
        );
        let fks = g["foreign_keys"].as_array().unwrap();
        assert_eq!(fks.len(), 2);
        assert!(fks
            .iter()
            .any(|f| f["table"] == "rdl_t.emp" && f["ref_table"] == "rdl_t.emp"));
        assert!(g["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("rdl_t.nokey")));
    }

    #[pg_test]
    fn set_time_column_overrides_detection() {
        setup();
        Spi::run("SELECT rdl_set_time_column('rdl_t.\"Order Items\"', 'updated_at')").unwrap();
        Spi::run("SELECT rdl_set_time_column('rdl_t.customers', NULL)").unwrap();
        let g = graph();
        assert_eq!(
            table(&g, "rdl_t.\"Order Items\"")["time_column"],
            "updated_at"
        );
        assert_eq!(table(&g, "rdl_t.\"Order Items\"")["time_source"], "user");
        assert!(table(&g, "rdl_t.customers")["time_column"].is_null());
    }

    #[pg_test(error = "relation \"rdl_t.missing\" does not exist")]
    fn set_time_column_missing_table() {
        setup();
        Spi::run("SELECT rdl_set_time_column('rdl_t.missing', 'x')").unwrap();
    }

    #[pg_test(error = "column \"nope\" of relation \"rdl_t.customers\" does not exist")]
    fn set_time_column_missing_column() {
        setup();
        Spi::run("SELECT rdl_set_time_column('rdl_t.customers', 'nope')").unwrap();
    }

    #[pg_test(
        error = "column \"name\" of relation \"rdl_t.customers\" is of type text, not a date or timestamp"
    )]
    fn set_time_column_wrong_type() {
        setup();
        Spi::run("SELECT rdl_set_time_column('rdl_t.customers', 'name')").unwrap();
    }
}
