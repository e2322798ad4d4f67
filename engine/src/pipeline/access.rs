//! Who may do what with a task, and the errors that say no (the rule: README, "Who may
//! use a task"). A task belongs to the role that created it: its owner (a member of the
//! owner role) may do anything with it, a role it is granted to may use it; every use
//! also reads the model's tables as the calling user.

use super::error::{Error, Result};
use super::servable::retrain;

/// What a function does with a task.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// Predict, explain, evaluate, inspect: the owner or a grantee.
    Use,
    /// Train, activate, grant, drop: the owner.
    Modify,
}

/// 42501 unless a caller who is (`is_owner`) or is not a member of task `name`'s owner
/// role `owner`, and was (`granted`) or was not granted it, may `access` it.
pub fn check(name: &str, access: Access, owner: &str, is_owner: bool, granted: bool) -> Result<()> {
    let belongs = || format!("Task \"{name}\" belongs to role {owner}.");
    match access {
        Access::Modify if !is_owner => Err(Error::new(
            "42501",
            format!("must be owner of task \"{name}\""),
        )
        .detail(belongs())
        .hint("Only the task's owner (or a member of its role) may train, activate, grant or drop it.")),
        Access::Use if !is_owner && !granted => Err(Error::new(
            "42501",
            format!("permission denied for task \"{name}\""),
        )
        .detail(belongs())
        .hint(format!(
            "Ask its owner to run SELECT rdl_grant_task('{}', '<your role>').",
            name.replace('\'', "''")
        ))),
        _ => Ok(()),
    }
}

/// The error for a table the model of `task` reads that the caller cannot read, if any
/// (`denied` as the task's state names it): 42P01 when it is gone (`missing:` prefix),
/// 42501 otherwise.
pub fn denied_table(task: &str, denied: Option<&str>) -> Result<()> {
    let Some(d) = denied else { return Ok(()) };
    if let Some(t) = d.strip_prefix("missing:") {
        return Err(Error::new("42P01", format!("table {t} no longer exists"))
            .detail(format!(
                "The model of task \"{task}\" was trained reading {t}."
            ))
            .hint(retrain(task)));
    }
    Err(
        Error::new("42501", format!("permission denied for table {d}"))
            .detail(format!(
                "The model of task \"{task}\" reads {d}; rdl reads data as the calling user."
            ))
            .hint("Ask the owner to GRANT SELECT on it, or retrain the task without it."),
    )
}

/// 42501 for `table`, linked to `entity_table` by foreign keys within `depth` hops, which
/// the caller may not read: it would otherwise be silently missing from `task`'s contexts.
pub fn unreadable_linked(task: &str, entity_table: &str, depth: u8, table: &str) -> Error {
    Error::new("42501", format!("permission denied for table {table}"))
        .detail(format!(
            "Task \"{task}\" reads every table linked to {entity_table} by foreign keys within {depth} hops, as the calling user."
        ))
        .hint("Ask the table's owner to GRANT SELECT on it to you.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_modify_grantees_use() {
        let ok = |a, is_owner, granted| check("t", a, "alice", is_owner, granted).is_ok();
        assert!(ok(Access::Modify, true, false) && ok(Access::Use, true, false));
        assert!(ok(Access::Use, false, true) && !ok(Access::Modify, false, true));
        let e = check("o'k", Access::Use, "alice", false, false).unwrap_err();
        assert_eq!(e.message, "permission denied for task \"o'k\"");
        assert_eq!(
            e.detail.as_deref(),
            Some("Task \"o'k\" belongs to role alice.")
        );
        assert!(e
            .hint
            .unwrap()
            .contains("rdl_grant_task('o''k', '<your role>')"));
        let e = check("t", Access::Modify, "alice", false, true).unwrap_err();
        assert_eq!(
            (e.sqlstate, e.message.as_str()),
            ("42501", "must be owner of task \"t\"")
        );
    }

    #[test]
    fn denied_tables() {
        assert!(denied_table("t", None).is_ok());
        let e = denied_table("t", Some("missing:public.orders")).unwrap_err();
        assert_eq!(
            (e.sqlstate, e.message.as_str()),
            ("42P01", "table public.orders no longer exists")
        );
        assert_eq!(e.hint.as_deref(), Some("Retrain: CALL rdl_train('t');"));
        let e = denied_table("t", Some("public.orders")).unwrap_err();
        assert_eq!(
            (e.sqlstate, e.message.as_str()),
            ("42501", "permission denied for table public.orders")
        );
        let e = unreadable_linked("t", "public.users", 2, "public.orders");
        assert!(e
            .detail
            .unwrap()
            .contains("linked to public.users by foreign keys within 2 hops"));
    }
}
