//! Writes a generated relational database and its tasks:
//! `cargo run --release -p rdl-engine --example gen_db -- --seed N --out DIR
//! [--scale tiny|small|medium|large] [--signal X] [--noise X] [--complexity X] [--splits]`
//!
//! DIR gets schema.sql, one CSV per table, tasks.json, load.sql and load.sh (run
//! `DIR/load.sh [psql options]`). `--splits` also writes `DIR/splits/<task>/{train,val,
//! test}.csv`, labelled in memory with the meaning of rdl's label SQL, and `DIR/splits.sql`,
//! a psql script (run from DIR after loading) that writes the same splits with rdl's own
//! label statements into `DIR/splits_sql/` (the benchmark itself exports them from rdl
//! with `rdl_task_table`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use rdl_engine::dbgen::{generate, write, DbConfig, Scale};

fn usage() -> ! {
    eprintln!(
        "usage: gen_db --seed N --out DIR [--scale tiny|small|medium|large] [--signal X] \
         [--noise X] [--complexity X] [--splits]"
    );
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut seed, mut out, mut splits) = (None, None, false);
    let mut cfg = DbConfig::default();
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--seed" => seed = val().parse::<u64>().ok(),
            "--out" => out = Some(PathBuf::from(val())),
            "--scale" => cfg.scale = Scale::parse(&val()).unwrap_or_else(|| usage()),
            "--signal" => cfg.signal = val().parse().unwrap_or_else(|_| usage()),
            "--noise" => cfg.noise = val().parse().unwrap_or_else(|_| usage()),
            "--complexity" => cfg.complexity = Some(val().parse().unwrap_or_else(|_| usage())),
            "--splits" => splits = true,
            _ => usage(),
        }
    }
    let (Some(seed), Some(out)) = (seed, out) else {
        usage()
    };
    let t0 = Instant::now();
    let db = generate(seed, &cfg);
    let gen_s = t0.elapsed().as_secs_f64();
    write::write_dir(&db, &out).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    if splits {
        write::write_splits(&db, &out).unwrap_or_else(|e| panic!("splits: {e}"));
    }
    // Printing stops quietly when the reader goes away (`| head`).
    let mut out_ = std::io::stdout().lock();
    let _ = writeln!(
        out_,
        "seed {seed}: {} ({}), {} tables, {} rows, {} tasks; generated in {gen_s:.2} s, written in {:.2} s",
        out.display(),
        db.domain,
        db.tables.len(),
        db.total_rows(),
        db.tasks.len(),
        t0.elapsed().as_secs_f64() - gen_s
    );
    for t in &db.tables {
        let _ = writeln!(
            out_,
            "  {:<28} {:>9} rows {:>3} cols  {:?}{}",
            t.name,
            t.rows(),
            t.columns.len(),
            t.role,
            t.time_column
                .as_deref()
                .map(|c| format!("  time {c}"))
                .unwrap_or_default()
        );
    }
    for t in &db.tasks {
        let _ = writeln!(
            out_,
            "  task {:<28} {:?} train {} (mean {:.3}) val {} test {} (mean {:.3})\n       {}",
            t.name,
            t.task_type,
            t.train.rows,
            t.train.mean,
            t.val.rows,
            t.test.rows,
            t.test.mean,
            t.query
        );
    }
}
