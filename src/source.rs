//! The engine's [`Source`] over SPI: labels from the task's label statements, contexts
//! from the sampler's statements, the interaction log of a ranking task — all read as the
//! calling user — and progress reported into the training run, where cancel is heard.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::PgOid;
use rdl_engine::pipeline::source::LabelCache;
use rdl_engine::pipeline::{Event, Gathered, Labeled, Result, Source, Split};
use rdl_engine::pql::{interactions_sql, TaskSpec};
use rdl_engine::sampler::Plan;

use crate::error::spi;
use crate::pgtime;
use crate::run::Run;

thread_local! {
    static LABELS: std::cell::RefCell<LabelCache> = Default::default();
}

pub struct SpiSource<'a> {
    /// The task's name (its anchors are stored with it).
    pub task: &'a str,
    pub spec: &'a TaskSpec,
    /// The training run progress goes to, if any.
    pub run: Option<&'a Run>,
}

impl<'a> SpiSource<'a> {
    pub fn new(task: &'a str, spec: &'a TaskSpec) -> SpiSource<'a> {
        SpiSource {
            task,
            spec,
            run: None,
        }
    }

    /// Labels are kept for the rest of the transaction, for the role that read them.
    fn cache_key(&self) -> String {
        // SAFETY: MyProc is this backend's own PGPROC.
        let lxid = unsafe { (*pg_sys::MyProc).lxid };
        let label_sql = self.spec.label_sql();
        format!(
            "{:?}",
            (crate::storage::caller(), lxid, self.task, label_sql)
        )
    }

    pub fn with_run(mut self, run: &'a Run) -> SpiSource<'a> {
        self.run = Some(run);
        self
    }
}

impl Source for SpiSource<'_> {
    fn labels(&mut self, split: Split) -> Result<Vec<Labeled>> {
        let rows = || crate::tasks::split_rows(self.task, self.spec, split);
        Ok(LABELS.with(|c| c.borrow_mut().get_or(self.cache_key(), split, rows)))
    }

    fn labels_at(&mut self, anchors: &[i64]) -> Result<Vec<Labeled>> {
        let spec = self.spec;
        let rows = |a: &[i64]| {
            crate::tasks::run_labels(spec, spec.label_sql(), pgtime::to_pg_all(a).into())
        };
        Ok(LABELS.with(|c| c.borrow_mut().at_or(self.cache_key(), anchors, rows)))
    }

    fn gather(&mut self, plan: &Plan, table: &str, seeds: &[(String, i64)]) -> Result<Gathered> {
        crate::gather::gather(plan, table, seeds)
    }

    fn interactions(
        &mut self,
        upto: i64,
        entity: Option<&str>,
    ) -> Result<Vec<(String, String, i64)>> {
        let (sql, params) = interactions_sql(self.spec, entity.is_some())
            .ok_or_else(|| rdl_engine::pipeline::Error::new("XX000", "rdl: not a ranking task"))?;
        let mut args: Vec<DatumWithOid> = vec![pgtime::to_pg(upto).into()];
        args.extend(params.into_iter().map(DatumWithOid::from));
        if let Some(e) = entity {
            args.push(e.to_string().into());
        }
        let mut types = vec![PgOid::from(pg_sys::TIMESTAMPTZOID)];
        types.extend(std::iter::repeat_n(
            PgOid::from(pg_sys::TEXTOID),
            args.len() - 1,
        ));
        Ok(crate::sql::connect(|client| {
            let stmt = crate::plans::kept(client, &sql, &types);
            let table = spi(client.select(&*stmt, None, &args));
            let mut v = Vec::with_capacity(table.len());
            for row in table {
                if let (Some(e), Some(i), Some(at)) = (
                    spi(row.get::<String>(1)),
                    spi(row.get::<String>(2)),
                    spi(row.get::<i64>(3)),
                ) {
                    v.push((e, i, at));
                }
            }
            v
        }))
    }

    fn memory_limit(&self) -> usize {
        crate::guc::max_memory_bytes()
    }

    fn report(&mut self, event: Event<'_>) -> Result<()> {
        match (event, self.run) {
            (Event::Phase(p), Some(run)) => run.progress(p, 0, None),
            (Event::Notice(n), _) => pgrx::notice!("{n}"),
            (Event::Epoch(p, entry), Some(run)) => {
                run.poll();
                run.progress("training", p.epoch + 1, Some(entry));
            }
            // Cancel and statement_timeout land here, between steps and pieces.
            (_, Some(run)) => run.poll(),
            (_, None) => {
                pgrx::check_for_interrupts!();
            }
        }
        Ok(())
    }
}
