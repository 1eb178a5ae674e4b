//! Translation of MySQL/MariaDB DDL, as the binlog carries it, into
//! PostgreSQL statements.
//!
//! Statements are read with the capture's tokenizer (the server's own reading
//! of versioned comments, backtick identifiers, backslash escapes) and a small
//! grammar of the table DDL below. Tables are named `"schema"."table"`, the
//! schema being the source database mapped by `schema_map`; every identifier
//! is quoted, so case is kept as the source wrote it.
//!
//! | MySQL / MariaDB | PostgreSQL |
//! |---|---|
//! | `CREATE DATABASE` / `DROP DATABASE` (`SCHEMA`) | `CREATE SCHEMA` / `DROP SCHEMA ... CASCADE` |
//! | `CREATE TABLE t (columns, keys) options` | `CREATE TABLE` with columns per [`super::types`], `NOT NULL`, literal defaults, the primary key; `UNIQUE` and plain keys become `CREATE [UNIQUE] INDEX` |
//! | `CREATE TABLE t LIKE u` | `CREATE TABLE t (LIKE u INCLUDING ALL)` |
//! | MariaDB's `CREATE OR REPLACE TABLE` / `DATABASE` | `DROP ... IF EXISTS`, then the `CREATE` |
//! | `ALTER TABLE ... ADD [COLUMN]` | `ADD COLUMN` (at the end: rows are matched by column name) |
//! | `... DROP [COLUMN]`, `RENAME COLUMN` | the same |
//! | `... MODIFY` / `CHANGE [COLUMN]` | `RENAME COLUMN` when the name changes, `ALTER COLUMN ... TYPE ... USING`, `SET`/`DROP NOT NULL`, `SET`/`DROP DEFAULT` (MySQL's MODIFY replaces the whole definition) |
//! | `... ALTER [COLUMN] SET DEFAULT` / `DROP DEFAULT` | the same |
//! | `... ADD PRIMARY KEY`, `DROP PRIMARY KEY` | the same (the key constraint found by its kind) |
//! | `... ADD [UNIQUE] KEY k`, `DROP KEY k`, `RENAME KEY`, `CREATE [UNIQUE] INDEX k ON t`, `DROP INDEX k ON t` | indexes named `<table>_<k>` |
//! | `... RENAME [TO] u`, `RENAME TABLE t TO u, ...` | `ALTER TABLE ... RENAME TO` (and `SET SCHEMA` across databases) |
//! | `DROP TABLE [IF EXISTS] t, ...` | the same |
//! | `TRUNCATE [TABLE] t` | the same |
//!
//! What is deliberately left out, because it does not change which rows and
//! values the target holds: table options (`ENGINE`, `AUTO_INCREMENT=`,
//! charsets, `COMMENT`, `ROW_FORMAT`, partitioning clauses of `CREATE TABLE`,
//! ...), `ALGORITHM`/`LOCK`, `CONVERT TO CHARACTER SET`, foreign keys,
//! `CHECK` constraints, `FULLTEXT`/`SPATIAL` keys, column comments,
//! visibility, `ON UPDATE` clauses, `AUTO_INCREMENT` (rows carry their
//! values), `FIRST`/`AFTER` positions, temporary tables, `ALTER DATABASE`,
//! `ANALYZE`/`OPTIMIZE`/`REPAIR`/`CHECK`/`FLUSH`. Generated columns become
//! ordinary columns holding the values the source computed.
//!
//! Everything else (views, routines, triggers, users and grants,
//! `CREATE TABLE ... SELECT`, system versioning, partition maintenance,
//! defaults that are expressions other than the current time, ...) is
//! [`Translation::Unsupported`]: the sink stops the stream at it or skips it,
//! as `on_unsupported_ddl` says. Nothing is guessed.

mod columns;
mod cursor;
mod table;
#[cfg(test)]
mod tests;

use std::cell::Cell;

use drc_capture::schema::ddl::tokenize;

use super::config::{PostgresSinkConfig, MAX_IDENT_LEN};
use super::types::{ident, table_ref};
use cursor::{is_kw, kw_of, split_commas, Cur, R};

/// What a DDL statement becomes on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Translation {
    /// Run these, in order, in the batch's transaction.
    Statements(Vec<String>),
    /// Nothing to do on PostgreSQL (the reason, for the log).
    NoOp(String),
    /// No translation: the reason, naming the clause.
    Unsupported(String),
}

/// Translates `statement`, run on the source with default database
/// `default_db`.
pub fn translate(statement: &str, default_db: &str, cfg: &PostgresSinkConfig) -> Translation {
    let tokens = match tokenize(statement) {
        Ok(t) => t,
        Err(e) => return Translation::Unsupported(e),
    };
    let bookkeeping = Cell::new(false);
    let mut c = Cur {
        t: &tokens,
        i: 0,
        db: default_db,
        cfg,
        bookkeeping: &bookkeeping,
    };
    let result = statement_of(&mut c);
    if bookkeeping.get() {
        // Another region's sink wrote its own tables on the source.
        return Translation::NoOp("the `drc` database is the sinks' bookkeeping".into());
    }
    match result {
        Ok(t) => t,
        Err(e) => Translation::Unsupported(e),
    }
}

fn statement_of(c: &mut Cur) -> R<Translation> {
    let Some(verb) = c.peek().and_then(kw_of) else {
        return Err("not a statement this sink knows".into());
    };
    c.i += 1;
    match verb.as_str() {
        "CREATE" => {
            // MariaDB's OR REPLACE drops what exists first.
            let or_replace = c.eat_kws(&["OR", "REPLACE"]);
            if c.eat_kw("DATABASE") || c.eat_kw("SCHEMA") {
                let if_not = c.eat_kws(&["IF", "NOT", "EXISTS"]);
                let db = c.ident("a database name")?;
                c.note_db(&db);
                let schema = ident(c.cfg.schema_of(&db));
                let mut out = Vec::new();
                if or_replace {
                    out.push(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
                }
                out.push(format!(
                    "CREATE SCHEMA {}{schema}",
                    if if_not { "IF NOT EXISTS " } else { "" }
                ));
                return Ok(Translation::Statements(out));
            }
            if c.eat_kw("TEMPORARY") {
                return Ok(Translation::NoOp("temporary table".into()));
            }
            if c.eat_kw("TABLE") {
                return table::create_table(c, or_replace);
            }
            let unique = c.eat_kw("UNIQUE");
            c.eat_kw("FULLTEXT");
            if c.eat_kw("INDEX") {
                return table::create_index(c, unique);
            }
            Err("only CREATE DATABASE, TABLE and INDEX are translated".into())
        }
        "ALTER" => {
            c.eat_kw("ONLINE");
            c.eat_kw("IGNORE");
            if c.eat_kw("TABLE") {
                return table::alter_table(c);
            }
            if c.eat_kw("DATABASE") || c.eat_kw("SCHEMA") {
                return Ok(Translation::NoOp("database options".into()));
            }
            Err("only ALTER TABLE is translated".into())
        }
        "DROP" => {
            if c.eat_kw("DATABASE") || c.eat_kw("SCHEMA") {
                let if_exists = c.eat_kws(&["IF", "EXISTS"]);
                let db = c.ident("a database name")?;
                c.note_db(&db);
                return Ok(one(format!(
                    "DROP SCHEMA {}{} CASCADE",
                    if if_exists { "IF EXISTS " } else { "" },
                    ident(c.cfg.schema_of(&db))
                )));
            }
            if c.eat_kw("TEMPORARY") {
                return Ok(Translation::NoOp("temporary table".into()));
            }
            if c.eat_kw("TABLE") {
                return drop_tables(c);
            }
            if c.eat_kw("INDEX") {
                let name = c.ident("an index name")?;
                if !c.eat_kw("ON") {
                    return Err("DROP INDEX without ON <table>".into());
                }
                let q = c.qname()?;
                return Ok(one(format!(
                    "DROP INDEX IF EXISTS {}",
                    index_ref(c, &q, &name)
                )));
            }
            Err("only DROP DATABASE, TABLE and INDEX are translated".into())
        }
        "RENAME" => {
            if !c.eat_kw("TABLE") && !c.eat_kw("TABLES") {
                return Err("only RENAME TABLE is translated".into());
            }
            let rest = &c.t[c.i..];
            let mut out = Vec::new();
            for part in split_commas(rest) {
                let mut p = c.sub(part);
                let from = p.qname()?;
                if !p.eat_kw("TO") {
                    return Err("RENAME TABLE without TO".into());
                }
                let to = p.qname()?;
                p.rest_is_empty("RENAME TABLE")?;
                out.extend(rename_table(c, &from, &to));
            }
            Ok(Translation::Statements(out))
        }
        "TRUNCATE" => {
            c.eat_kw("TABLE");
            let q = c.qname()?;
            c.rest_is_empty("TRUNCATE")?;
            Ok(one(format!("TRUNCATE TABLE {}", c.target(&q))))
        }
        "ANALYZE" | "OPTIMIZE" | "REPAIR" | "CHECK" | "FLUSH" => Ok(Translation::NoOp(format!(
            "{} has no effect on the target's rows",
            verb
        ))),
        other => Err(format!("{other} statements are not translated")),
    }
}

fn one(s: String) -> Translation {
    Translation::Statements(vec![s])
}

/// The target name of index `name` of table `q`: `"schema"."<table>_<name>"`
/// (PostgreSQL names indexes per schema, MySQL per table).
fn index_ref(c: &Cur, q: &(String, String), name: &str) -> String {
    table_ref(c.cfg.schema_of(&q.0), &index_name(&q.1, name))
}

fn index_name(table: &str, name: &str) -> String {
    let mut n = format!("{table}_{name}");
    while n.len() > MAX_IDENT_LEN {
        n.pop();
    }
    n
}

fn rename_table(c: &Cur, from: &(String, String), to: &(String, String)) -> Vec<String> {
    let (from_schema, to_schema) = (c.cfg.schema_of(&from.0), c.cfg.schema_of(&to.0));
    let mut out = Vec::new();
    let mut current = c.target(from);
    if from_schema != to_schema {
        out.push(format!(
            "ALTER TABLE {current} SET SCHEMA {}",
            ident(to_schema)
        ));
        current = table_ref(to_schema, &from.1);
    }
    if from.1 != to.1 {
        out.push(format!("ALTER TABLE {current} RENAME TO {}", ident(&to.1)));
    }
    out
}

fn drop_tables(c: &mut Cur) -> R<Translation> {
    let if_exists = c.eat_kws(&["IF", "EXISTS"]);
    let mut rest = &c.t[c.i..];
    if let Some(last) = rest.last() {
        if is_kw(last, "RESTRICT") || is_kw(last, "CASCADE") {
            rest = &rest[..rest.len() - 1];
        }
    }
    let mut names = Vec::new();
    for part in split_commas(rest) {
        let mut p = c.sub(part);
        let q = p.qname()?;
        p.rest_is_empty("DROP TABLE")?;
        names.push(c.target(&q));
    }
    Ok(one(format!(
        "DROP TABLE {}{}",
        if if_exists { "IF EXISTS " } else { "" },
        names.join(", ")
    )))
}
