//! Which region a captured transaction came from (loop prevention).
//!
//! DRC's appliers mark what they write into a MySQL/MariaDB target so that a
//! capture of that target can tell it from local writes (the design's
//! "Active-active"):
//!
//! - every applied group of row changes inserts a row into `drc.applied`
//!   (and settles `drc.checkpoints`) in the same transaction, with an
//!   `origin` column: a transaction holding such a row gets that origin;
//! - an applied DDL starts with the comment `/* drc origin=NAME */`, which
//!   the server keeps in its binlog: the DDL gets that origin, and the
//!   comment is dropped from the captured statement.
//!
//! Local writes have no origin (the empty string).

use drc_proto::v1 as pb;
use pb::value::Kind;

/// The schema of DRC's bookkeeping tables in a target.
pub const SCHEMA: &str = "drc";

/// Tables whose `origin` column marks an applied transaction.
const MARKING_TABLES: [&str; 2] = ["applied", "checkpoints"];

/// The start of the comment an applier puts before a DDL.
pub const DDL_PREFIX: &str = "/* drc origin=";

/// The origin a row image of a DRC bookkeeping table names, if `db.table`
/// is one and the image has an `origin` text value.
pub fn of_row(
    db: &str,
    table: &str,
    columns: &[pb::Column],
    row: Option<&pb::Row>,
) -> Option<String> {
    if !db.eq_ignore_ascii_case(SCHEMA)
        || !MARKING_TABLES.iter().any(|t| table.eq_ignore_ascii_case(t))
    {
        return None;
    }
    let i = columns
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case("origin"))?;
    match row?.values.get(i)?.kind.as_ref()? {
        Kind::Text(s) if !s.is_empty() => Some(s.clone()),
        Kind::Bytes(b) if !b.is_empty() => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

/// Splits an applier's origin comment off a DDL statement:
/// `("/* drc origin=a.shop */ ALTER ...")` gives `(Some("a.shop"), "ALTER ...")`.
pub fn of_ddl(statement: &str) -> (Option<String>, &str) {
    let s = statement.trim_start();
    let Some(rest) = s.strip_prefix(DDL_PREFIX) else {
        return (None, statement);
    };
    let Some(end) = rest.find("*/") else {
        return (None, statement);
    };
    let name = rest[..end].trim();
    if name.is_empty() {
        return (None, statement);
    }
    (Some(name.to_string()), rest[end + 2..].trim_start())
}

/// The comment an applier puts before a DDL of `origin` (characters other
/// than letters, digits, `.`, `_` and `-` become `_`, so it stays a comment).
pub fn ddl_comment(origin: &str) -> String {
    let clean: String = origin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{DDL_PREFIX}{clean} */ ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_comment_round_trips() {
        let stmt = format!("{}ALTER TABLE t ADD c INT", ddl_comment("a.shop"));
        assert_eq!(
            of_ddl(&stmt),
            (Some("a.shop".into()), "ALTER TABLE t ADD c INT")
        );
        assert_eq!(
            of_ddl("ALTER TABLE t ADD c INT"),
            (None, "ALTER TABLE t ADD c INT")
        );
        assert_eq!(
            of_ddl("/* other */ DROP TABLE t"),
            (None, "/* other */ DROP TABLE t")
        );
        assert_eq!(ddl_comment("x */ y"), "/* drc origin=x____y */ ");
    }

    #[test]
    fn rows_of_bookkeeping_tables_name_their_origin() {
        let cols = vec![
            pb::Column {
                name: "stream".into(),
                ..Default::default()
            },
            pb::Column {
                name: "origin".into(),
                ..Default::default()
            },
        ];
        let row = pb::Row {
            values: vec![
                pb::Value {
                    kind: Some(Kind::Text("a.shop".into())),
                },
                pb::Value {
                    kind: Some(Kind::Text("region-a".into())),
                },
            ],
        };
        assert_eq!(
            of_row("drc", "applied", &cols, Some(&row)),
            Some("region-a".into())
        );
        assert_eq!(of_row("shop", "applied", &cols, Some(&row)), None);
        assert_eq!(of_row("drc", "conflicts", &cols, Some(&row)), None);
        assert_eq!(of_row("drc", "applied", &cols, None), None);
    }
}
