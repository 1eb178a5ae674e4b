//! Table schemas as the capture needs them to decode row events.
//!
//! A [`TableSchema`] is what the capture knows of one table at one point of the
//! stream: column names, types, charsets, ENUM/SET labels and the primary key.
//! It comes from the binlog's own TABLE_MAP metadata when the server sends it
//! (`binlog_row_metadata=FULL`), and otherwise from the schema history
//! ([`history`]): an `information_schema` snapshot plus every DDL applied in
//! stream order ([`ddl`]).

pub mod ddl;
pub mod history;
pub mod snapshot;

use serde::{Deserialize, Serialize};

/// One column of a table, in table order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    /// Lower-case base type as `information_schema.COLUMNS.DATA_TYPE` spells it:
    /// `int`, `varchar`, `decimal`, `enum`, `inet6`, `uuid`, `json`, ...
    pub data_type: String,
    /// Full type as `COLUMN_TYPE` spells it: `int(10) unsigned`, `enum('a','b')`.
    pub column_type: String,
    pub unsigned: bool,
    pub nullable: bool,
    /// Character set name (`utf8mb4`, `latin1`, `binary`, ...); `None` for
    /// non-string columns.
    pub charset: Option<String>,
    /// ENUM or SET labels, in declaration order.
    pub labels: Vec<String>,
    /// Generated (virtual or stored) column.
    pub generated: bool,
    /// Invisible column (MariaDB `INVISIBLE`, MySQL `INVISIBLE`).
    pub invisible: bool,
}

/// A table's shape at one point of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub db: String,
    pub table: String,
    pub columns: Vec<ColumnDef>,
    /// Indexes into `columns` of the primary key; empty when the table has none
    /// (then the first UNIQUE key whose columns are all NOT NULL, if any).
    pub primary_key: Vec<usize>,
}

impl TableSchema {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }
}
