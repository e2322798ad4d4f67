//! The errors a recipe returns: what the extension raises, with a SQLSTATE, a message
//! naming the object at fault, and mostly a hint.

use std::fmt;

use crate::memory::Exceeded;
use crate::pql::{PqlError, TaskType};
use crate::train::TrainError;

#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub sqlstate: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl Error {
    pub fn new(sqlstate: &'static str, message: impl Into<String>) -> Error {
        Error {
            sqlstate,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Error {
        self.detail = Some(detail.into());
        self
    }

    /// 55000 with a hint to train: the task has no trained model.
    pub fn no_model(task: &str) -> Error {
        Error::new("55000", format!("task \"{task}\" has no trained model")).hint(format!(
            "Train one with CALL rdl_train('{}');",
            task.replace('\'', "''")
        ))
    }

    /// 53200 for `what`, which would hold more than the call's memory budget.
    pub fn over_memory(what: String, e: Exceeded, hint: &str) -> Error {
        let mb = |b: usize| b.div_ceil(1 << 20);
        Error::new(
            "53200",
            format!(
                "{what} would need about {} MB, more than rdl.max_memory_mb ({} MB)",
                mb(e.need),
                mb(e.limit)
            ),
        )
        .hint(format!(
            "{hint} Or raise rdl.max_memory_mb (SET rdl.max_memory_mb = '{}MB'; above rdl.max_memory_ceiling_mb only a superuser may).",
            mb(e.need) * 2
        ))
    }
}

/// What a SQL function needs of the task it is called on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Needs {
    /// A probability or a value: binary or regression.
    Value,
    /// A class: multiclass.
    Class,
    /// Anything but ranking (explanations, batches).
    NotRanking,
    /// A ranking task.
    Ranking,
}

/// 42809 naming `function` and `task` when the task's kind is not what the function needs,
/// with a hint at the functions that apply.
pub fn check_applies(kind: TaskType, task: &str, function: &str, needs: Needs) -> Result<()> {
    let hint = match (needs, kind) {
        (Needs::Ranking, TaskType::Ranking) => return Ok(()),
        (Needs::Ranking, _) => {
            "Use rdl_predict, rdl_predict_class or rdl_predict_batch for this task."
        }
        (_, TaskType::Ranking) => {
            "The task ranks items: use rdl_recommend(task, id, k) and rdl_evaluate(task)."
        }
        (Needs::Value, TaskType::MulticlassClassification) => {
            "The task predicts a class: use rdl_predict_class(task, id) or rdl_predict_proba(task, id)."
        }
        (Needs::Class, TaskType::MulticlassClassification) => return Ok(()),
        (Needs::Class, _) => "The task predicts a number: use rdl_predict(task, id).",
        _ => return Ok(()),
    };
    let e = Error::new(
        "42809",
        format!("{function} does not apply to task \"{task}\""),
    );
    Err(if needs == Needs::Ranking {
        let kind = serde_json::to_value(kind).ok();
        let kind = kind.as_ref().and_then(|v| v.as_str()).unwrap_or_default();
        e.detail(format!(
            "Task \"{task}\" is a {kind} task; {function} needs a ranking task (PREDICT LIST_DISTINCT(...) RANK TOP k)."
        ))
    } else {
        e
    }
    .hint(hint))
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.sqlstate)
    }
}

impl std::error::Error for Error {}

impl From<PqlError> for Error {
    fn from(e: PqlError) -> Error {
        Error {
            sqlstate: e.sqlstate,
            message: e.message,
            detail: e.detail,
            hint: e.hint,
        }
    }
}

impl From<TrainError> for Error {
    fn from(e: TrainError) -> Error {
        match e {
            TrainError::Cancelled => Error::new("57014", "training was cancelled"),
            TrainError::NoTrainingData => Error::new("55000", "the training split is empty")
                .hint("Check the task's anchors and filters with rdl_task_table(name, 'train')."),
            TrainError::BadLabel(s) => {
                Error::new("22023", format!("cannot train on these labels: {s}"))
            }
            other => Error::new("XX000", format!("rdl model error: {other}")),
        }
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Error {
        TrainError::Candle(e).into()
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// `"42P01"` → the packed code PostgreSQL uses for it (`MAKE_SQLSTATE`): six bits a
/// character, the first lowest. `None` unless it has five characters.
pub fn packed_sqlstate(s: &str) -> Option<i32> {
    let b: [u8; 5] = s.as_bytes().try_into().ok()?;
    let six = |c: u8| ((c as i32) - ('0' as i32)) & 0x3F;
    Some((0..5).map(|i| six(b[i]) << (6 * i)).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_pack_as_postgresql_packs_them() {
        // ERRCODE_INTERNAL_ERROR, ERRCODE_UNDEFINED_TABLE, ERRCODE_QUERY_CANCELED.
        assert_eq!(packed_sqlstate("XX000"), Some(2600));
        assert_eq!(packed_sqlstate("42P01"), Some(16_908_420));
        assert_eq!(
            packed_sqlstate("57014"),
            Some(5 + (7 << 6) + (1 << 18) + (4 << 24))
        );
        assert_eq!(packed_sqlstate("4200"), None);
        assert_eq!(packed_sqlstate("42P011"), None);
    }
}
