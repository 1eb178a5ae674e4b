//! Configuration of the PostgreSQL sink.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{ApplyError, Result};
use crate::sink::mysql::ConflictPolicy;

/// Longest `origin` name written into `drc.checkpoints`.
pub const MAX_ORIGIN_LEN: usize = 200;

/// Longest PostgreSQL identifier (`NAMEDATALEN - 1`).
pub const MAX_IDENT_LEN: usize = 63;

/// Default conflict policy: stop the stream at the first conflict.
pub const DEFAULT_CONFLICT_POLICY: ConflictPolicy = ConflictPolicy::Fail;

/// Default for DDL the sink cannot translate: stop the stream.
pub const DEFAULT_ON_UNSUPPORTED_DDL: UnsupportedDdl = UnsupportedDdl::Fail;

/// Default for rows of a table the target lacks: stop the stream.
pub const DEFAULT_CREATE_MISSING_TABLES: bool = false;

/// What the sink does with a DDL statement it cannot translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnsupportedDdl {
    /// Stop the stream at the statement, nothing of its batch applied.
    Fail,
    /// Log a warning naming the statement and offset, and go on.
    Skip,
}

impl UnsupportedDdl {
    pub fn as_str(self) -> &'static str {
        match self {
            UnsupportedDdl::Fail => "fail",
            UnsupportedDdl::Skip => "skip",
        }
    }
}

/// Settings of a [`super::PostgresSink`].
///
/// ```toml
/// url = "postgres://drc:secret@pg-b.internal:5432/app"
/// conflict_policy = "fail"          # fail | overwrite | ignore
/// origin = "region-a"               # optional
/// on_unsupported_ddl = "fail"       # fail | skip
/// create_missing_tables = false
/// schema_map = { shop = "shop_replica" }   # optional; default: database `db` -> schema `db`
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// Target database, `postgres://user:password@host:port/database` (or the
    /// `key=value` form tokio-postgres accepts). Plain TCP or a Unix socket:
    /// TLS is not supported yet, so keep the target on a trusted network.
    /// The user needs USAGE and CREATE on the `drc` schema (or CREATE on the
    /// database, to create it on first use), INSERT, UPDATE, DELETE, SELECT
    /// on the replicated tables, and the privileges of the replicated DDL.
    pub url: String,
    /// What to do when a change does not fit the target's rows (a missing row
    /// for UPDATE/DELETE, a taken key for INSERT or UPDATE): `fail` (stop the
    /// stream, nothing of the batch applied), `overwrite` (make the target
    /// row what the source says, and record it in `drc.conflicts`) or
    /// `ignore` (leave the target as it is, and record it). Default `fail`.
    #[serde(default = "default_conflict_policy")]
    pub conflict_policy: ConflictPolicy,
    /// Name written in the `origin` column of each checkpoint row (the region
    /// the applied stream comes from). Defaults to the stream's name.
    #[serde(default)]
    pub origin: Option<String>,
    /// What to do with DDL that has no PostgreSQL translation (see the
    /// module docs for what is translated): `fail` (stop the stream at it)
    /// or `skip` (warn and go on; the target's tables may then differ).
    /// Default `fail`.
    #[serde(default = "default_on_unsupported_ddl")]
    pub on_unsupported_ddl: UnsupportedDdl,
    /// Whether a row change for a table the target lacks creates that table
    /// from the change's column list (types per the documented mapping,
    /// primary key from the change). Default `false`: such a change stops
    /// the stream, since it usually means a wrong `schema_map` or a target
    /// that was not prepared.
    #[serde(default = "default_create_missing_tables")]
    pub create_missing_tables: bool,
    /// Target schema per source database; a database not named here goes
    /// to the schema of its own name.
    #[serde(default)]
    pub schema_map: BTreeMap<String, String>,
    /// Whether conflicts are logged and recorded in `drc.conflicts` (always
    /// from a configuration file). `drc migrate` turns it off while it
    /// replays the changes made during its snapshot: there the target may
    /// already hold a change's outcome, and overwriting is the expected way
    /// to converge, not a conflict anyone must look at.
    #[serde(skip, default = "default_record_conflicts")]
    pub record_conflicts: bool,
}

fn default_record_conflicts() -> bool {
    true
}

fn default_conflict_policy() -> ConflictPolicy {
    DEFAULT_CONFLICT_POLICY
}

fn default_on_unsupported_ddl() -> UnsupportedDdl {
    DEFAULT_ON_UNSUPPORTED_DDL
}

fn default_create_missing_tables() -> bool {
    DEFAULT_CREATE_MISSING_TABLES
}

impl PostgresSinkConfig {
    /// A configuration with the defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            conflict_policy: DEFAULT_CONFLICT_POLICY,
            origin: None,
            on_unsupported_ddl: DEFAULT_ON_UNSUPPORTED_DDL,
            create_missing_tables: DEFAULT_CREATE_MISSING_TABLES,
            schema_map: BTreeMap::new(),
            record_conflicts: true,
        }
    }

    /// The target schema of source database `db`.
    pub fn schema_of<'a>(&'a self, db: &'a str) -> &'a str {
        self.schema_map.get(db).map_or(db, String::as_str)
    }

    /// Checks the settings without connecting.
    pub fn validate(&self) -> Result<()> {
        if self.url.trim().is_empty() {
            return Err(ApplyError::Config("postgres sink: `url` is empty".into()));
        }
        self.url.parse::<tokio_postgres::Config>().map_err(|e| {
            // The URL may hold a password: name the problem, not the URL.
            ApplyError::Config(format!(
                "postgres sink: `url` is not a valid postgres:// URL or key=value string: {e}"
            ))
        })?;
        if let Some(origin) = &self.origin {
            if origin.is_empty() {
                return Err(ApplyError::Config(
                    "postgres sink: `origin` is empty (leave it out to use the stream name)".into(),
                ));
            }
            if origin.chars().count() > MAX_ORIGIN_LEN {
                return Err(ApplyError::Config(format!(
                    "postgres sink: `origin` is longer than {MAX_ORIGIN_LEN} characters"
                )));
            }
        }
        for (db, schema) in &self.schema_map {
            if schema.is_empty() || schema.len() > MAX_IDENT_LEN {
                return Err(ApplyError::Config(format!(
                    "postgres sink: `schema_map.{db}` must be a schema name of 1 to \
                     {MAX_IDENT_LEN} bytes"
                )));
            }
            if schema.eq_ignore_ascii_case(super::checkpoint::SCHEMA) {
                return Err(ApplyError::Config(format!(
                    "postgres sink: `schema_map.{db}` = \"drc\": that schema holds the sink's \
                     checkpoints; pick another"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults_and_refuses_unknown_fields() {
        let c: PostgresSinkConfig =
            serde_json::from_str(r#"{"url": "postgres://u@h:5432/db"}"#).expect("parse");
        assert_eq!(c, PostgresSinkConfig::new("postgres://u@h:5432/db"));
        c.validate().expect("valid");
        let c: PostgresSinkConfig = serde_json::from_str(
            r#"{"url": "postgres://u@h/db", "conflict_policy": "overwrite", "origin": "a",
                "on_unsupported_ddl": "skip", "create_missing_tables": true,
                "schema_map": {"shop": "s2"}}"#,
        )
        .expect("parse");
        assert_eq!(c.conflict_policy, ConflictPolicy::Overwrite);
        assert_eq!(c.on_unsupported_ddl, UnsupportedDdl::Skip);
        assert_eq!(c.schema_of("shop"), "s2");
        assert_eq!(c.schema_of("other"), "other");
        assert!(serde_json::from_str::<PostgresSinkConfig>(r#"{"url": "x", "bogus": 1}"#).is_err());
        assert!(serde_json::from_str::<PostgresSinkConfig>(
            r#"{"url": "x", "on_unsupported_ddl": "maybe"}"#
        )
        .is_err());
    }

    #[test]
    fn validate_refuses_bad_values() {
        assert!(PostgresSinkConfig::new("").validate().is_err());
        assert!(PostgresSinkConfig::new("postgres://u@h:notaport/db")
            .validate()
            .is_err());
        let mut c = PostgresSinkConfig::new("postgres://u@h/db");
        c.origin = Some(String::new());
        assert!(c.validate().is_err());
        c.origin = None;
        c.schema_map.insert("a".into(), "drc".into());
        assert!(c.validate().is_err());
        c.schema_map.insert("a".into(), String::new());
        assert!(c.validate().is_err());
    }
}
