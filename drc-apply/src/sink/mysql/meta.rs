//! What the sink needs to know about a target table, read from the target's
//! `information_schema` once per table and kept until the next DDL:
//!
//! - its generated columns (never written or matched);
//! - its **key column lists**: the primary key, every unique key, and every
//!   column list another table's foreign key references. Two changes that
//!   hold the same values in one of these lists touch the same row (or the
//!   parent row of a child), so parallel apply must keep them in order;
//! - its **foreign keys**: a child row's reference values name the parent
//!   row it needs, which orders it after the change that wrote the parent;
//! - its **triggers**, which are guarded before the first write (see
//!   [`TriggerPolicy`]).
//!
//! Column names are compared case-insensitively, as MySQL and MariaDB do.

use std::collections::HashMap;
use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use serde::Deserialize;

/// The user variable every sink session sets; guarded triggers do nothing
/// while it is set, so a replicated row does not make a target trigger write
/// what the source's trigger already wrote (and the stream carries).
pub const GUARD_VARIABLE: &str = "@drc_apply";

/// The start of a guarded trigger's body.
pub const GUARD_PREFIX: &str = "IF @drc_apply IS NULL THEN ";

/// What the sink does with triggers on the tables it writes.
///
/// The source's binlog already carries every row its triggers wrote, so a
/// target trigger that fires again for a replicated row writes those rows a
/// second time. MySQL and MariaDB only skip triggers for their own
/// replication threads; a client like this sink cannot ask for that, so the
/// sink guards the triggers instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TriggerPolicy {
    /// Before the first write into a table, rewrite each of its triggers so
    /// that its body runs only when `@drc_apply` is not set: local writes
    /// still fire it, the sink's writes do not. The rewrite keeps the
    /// trigger's name, definer, timing, event, order and SQL mode
    /// (`CREATE OR REPLACE TRIGGER` on MariaDB; `DROP` + `CREATE` on MySQL).
    #[default]
    Guard,
    /// Leave triggers as they are: they fire for replicated rows too.
    Fire,
    /// Stop the stream when a table the sink writes has an unguarded trigger.
    Fail,
}

impl TriggerPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerPolicy::Guard => "guard",
            TriggerPolicy::Fire => "fire",
            TriggerPolicy::Fail => "fail",
        }
    }
}

/// A foreign key of a child table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    /// Child columns, in the constraint's order (lowercase).
    pub columns: Vec<String>,
    /// The parent's schema and table (lowercase).
    pub parent: (String, String),
    /// The parent's columns, in the same order (lowercase).
    pub parent_columns: Vec<String>,
}

/// What the sink knows of one target table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableMeta {
    /// Generated columns (lowercase).
    pub generated: std::collections::HashSet<String>,
    /// Primary key, unique keys and referenced column lists (lowercase).
    pub key_lists: Vec<Vec<String>>,
    /// Foreign keys of this table as a child.
    pub foreign_keys: Vec<ForeignKey>,
}

/// Tables looked up so far, keyed by (schema, table) as the stream names them.
#[derive(Debug, Default)]
pub struct MetaCache {
    /// Schema, then table: looked up by `&str`, with no allocation (it is
    /// asked several times for every row change).
    tables: HashMap<String, HashMap<String, Arc<TableMeta>>>,
}

impl MetaCache {
    /// Forgets everything (after DDL).
    pub fn clear(&mut self) {
        self.tables.clear();
    }

    pub fn get(&self, schema: &str, table: &str) -> Option<&Arc<TableMeta>> {
        self.tables.get(schema)?.get(table)
    }

    pub fn contains(&self, schema: &str, table: &str) -> bool {
        self.get(schema, table).is_some()
    }

    pub fn insert(&mut self, schema: &str, table: &str, meta: TableMeta) {
        self.tables
            .entry(schema.to_owned())
            .or_default()
            .insert(table.to_owned(), Arc::new(meta));
    }
}

/// Reads a table's metadata from `information_schema`.
pub async fn load(conn: &mut Conn, schema: &str, table: &str) -> mysql_async::Result<TableMeta> {
    let generated: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND IFNULL(GENERATION_EXPRESSION, '') <> ''",
            (schema, table),
        )
        .await?;
    let unique: Vec<(String, String)> = conn
        .exec(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0
             ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (schema, table),
        )
        .await?;
    let children: Vec<(String, String, String, String, String)> = conn
        .exec(
            "SELECT CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME,
                    REFERENCED_COLUMN_NAME
             FROM information_schema.KEY_COLUMN_USAGE
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND REFERENCED_TABLE_NAME IS NOT NULL
             ORDER BY CONSTRAINT_NAME, ORDINAL_POSITION",
            (schema, table),
        )
        .await?;
    let referenced: Vec<(String, String, String, String)> = conn
        .exec(
            "SELECT TABLE_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, REFERENCED_COLUMN_NAME
             FROM information_schema.KEY_COLUMN_USAGE
             WHERE REFERENCED_TABLE_SCHEMA = ? AND REFERENCED_TABLE_NAME = ?
             ORDER BY TABLE_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION",
            (schema, table),
        )
        .await?;

    let mut meta = TableMeta {
        generated: generated.into_iter().map(|n| n.to_lowercase()).collect(),
        ..TableMeta::default()
    };
    let push_list = |list: Vec<String>, lists: &mut Vec<Vec<String>>| {
        if !list.is_empty() && !lists.contains(&list) {
            lists.push(list);
        }
    };
    for (_, rows) in group_by(unique, |(index, _)| index.clone()) {
        let list = rows.into_iter().map(|(_, c)| c.to_lowercase()).collect();
        push_list(list, &mut meta.key_lists);
    }
    for (_, rows) in group_by(referenced, |(s, t, c, _)| (s.clone(), t.clone(), c.clone())) {
        let list = rows
            .into_iter()
            .map(|(_, _, _, c)| c.to_lowercase())
            .collect();
        push_list(list, &mut meta.key_lists);
    }
    for (_, rows) in group_by(children, |(name, ..)| name.clone()) {
        let Some((_, _, ps, pt, _)) = rows.first().cloned() else {
            continue;
        };
        meta.foreign_keys.push(ForeignKey {
            columns: rows.iter().map(|r| r.1.to_lowercase()).collect(),
            parent: (ps.to_lowercase(), pt.to_lowercase()),
            parent_columns: rows.iter().map(|r| r.4.to_lowercase()).collect(),
        });
    }
    Ok(meta)
}

/// Consecutive rows with the same key, in order.
fn group_by<T, K: PartialEq>(rows: Vec<T>, key: impl Fn(&T) -> K) -> Vec<(K, Vec<T>)> {
    let mut out: Vec<(K, Vec<T>)> = Vec::new();
    for row in rows {
        let k = key(&row);
        match out.last_mut() {
            Some((last, group)) if *last == k => group.push(row),
            _ => out.push((k, vec![row])),
        }
    }
    out
}

/// A trigger that is not guarded yet.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub name: String,
    pub action: String,
    pub sql_mode: String,
}

/// The triggers of a table whose body does not start with [`GUARD_PREFIX`].
pub async fn unguarded_triggers(
    conn: &mut Conn,
    schema: &str,
    table: &str,
) -> mysql_async::Result<Vec<Trigger>> {
    let rows: Vec<(String, String, String)> = conn
        .exec(
            "SELECT TRIGGER_NAME, ACTION_STATEMENT, SQL_MODE FROM information_schema.TRIGGERS
             WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ?
             ORDER BY ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
            (schema, table),
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter(|(_, action, _)| !is_guarded(action))
        .map(|(name, action, sql_mode)| Trigger {
            name,
            action,
            sql_mode,
        })
        .collect())
}

/// Whether a trigger body is guarded already.
pub fn is_guarded(action: &str) -> bool {
    action
        .trim_start()
        .get(..GUARD_PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(GUARD_PREFIX))
}

/// The guarded form of a trigger's `CREATE TRIGGER` statement, as the server
/// shows it: the body (the statement's tail, which `information_schema`
/// gives exactly) becomes `IF @drc_apply IS NULL THEN <body>; END IF`.
/// `or_replace` turns `CREATE` into `CREATE OR REPLACE` (MariaDB).
pub fn guarded_statement(create: &str, action: &str, or_replace: bool) -> Option<String> {
    let create = create.trim_end();
    let head = create.strip_suffix(action.trim_end())?;
    let rest = head.trim_start();
    let after_create = rest
        .get(..6)
        .filter(|w| w.eq_ignore_ascii_case("CREATE"))
        .map(|_| &rest[6..])?;
    let mut out = String::with_capacity(create.len() + 48);
    out.push_str(if or_replace {
        "CREATE OR REPLACE"
    } else {
        "CREATE"
    });
    out.push_str(after_create);
    out.push_str(GUARD_PREFIX);
    out.push_str(action.trim_end().trim_end_matches(';'));
    out.push_str("; END IF");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_a_trigger_statement() {
        let action = "INSERT INTO audit (id) VALUES (NEW.id)";
        let create = format!(
            "CREATE DEFINER=`root`@`localhost` TRIGGER t_ai AFTER INSERT ON t FOR EACH ROW {action}"
        );
        let g = guarded_statement(&create, action, true).expect("guarded");
        assert_eq!(
            g,
            "CREATE OR REPLACE DEFINER=`root`@`localhost` TRIGGER t_ai AFTER INSERT ON t FOR EACH ROW \
             IF @drc_apply IS NULL THEN INSERT INTO audit (id) VALUES (NEW.id); END IF"
        );
        let body = &g[g.find(GUARD_PREFIX).expect("prefix")..];
        assert!(is_guarded(body));
        assert!(!is_guarded(action));
        let block = "BEGIN\n  SET NEW.x = 1;\nEND";
        let g = guarded_statement(
            &format!("CREATE TRIGGER b BEFORE UPDATE ON t FOR EACH ROW {block}"),
            block,
            false,
        )
        .expect("guarded");
        assert!(g.starts_with("CREATE TRIGGER b"));
        assert!(g.ends_with("THEN BEGIN\n  SET NEW.x = 1;\nEND; END IF"));
        // A statement that does not end with the body is not rewritten.
        assert!(guarded_statement("CREATE TRIGGER x ... other", action, true).is_none());
    }

    #[test]
    fn groups_consecutive_rows() {
        let g = group_by(vec![(1, 'a'), (1, 'b'), (2, 'c'), (1, 'd')], |r| r.0);
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].1.len(), 2);
    }
}
