//! Reading table schemas from a live server's `information_schema`.
//!
//! This is where the schema history starts ([`load_snapshot`]), and how a DDL
//! the history cannot follow by itself gets its effect confirmed
//! ([`load_table`]). It reads base tables only (MariaDB's system-versioned
//! tables included), never the system schemas unless asked for by name, and
//! reads every text column as bytes, so binary-collated `information_schema`
//! columns read as well as text ones.
//!
//! What it reads of each column: name, `DATA_TYPE`, `COLUMN_TYPE` (and from it
//! signedness and ENUM/SET labels), nullability, charset (`utf8` reported as
//! `utf8mb3`), whether it is generated (`VIRTUAL GENERATED`/`STORED
//! GENERATED` in `EXTRA`) or invisible (`INVISIBLE` in `EXTRA`). Of each table:
//! its default charset and its indexes, from which the key is chosen: the
//! PRIMARY KEY, else the first UNIQUE index whose columns are all NOT NULL.
//!
//! The caller is responsible for the snapshot matching its binlog position
//! (no DDL between reading the position and reading the schema).

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Row, Value};

use super::ddl::{
    charset_of_collation, normalize_charset, IndexDef, TableKey, TableMeta, SYSTEM_SCHEMAS,
};
use super::history::SchemaError;
use super::{ColumnDef, TableSchema};

/// Everything [`super::history::SchemaHistory::record_full_snapshot`] keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaSnapshot {
    /// Ordered by (database, table).
    pub tables: Vec<(TableSchema, TableMeta)>,
    /// Default charset of each database read.
    pub db_charsets: BTreeMap<String, String>,
    /// `@@character_set_server`.
    pub server_charset: Option<String>,
    /// The databases asked for; `None` for all but the system schemas.
    pub dbs: Option<Vec<String>>,
}

#[derive(Clone, Copy)]
enum Filter<'a> {
    All,
    Dbs(&'a [String]),
    Table(&'a str, &'a str),
}

impl Filter<'_> {
    /// A WHERE condition on the given columns, and its parameters.
    fn condition(&self, schema_col: &str, table_col: &str) -> (String, Vec<Value>) {
        match self {
            Filter::All => {
                let list: Vec<String> = SYSTEM_SCHEMAS.iter().map(|s| format!("'{s}'")).collect();
                (
                    format!("{schema_col} NOT IN ({})", list.join(",")),
                    Vec::new(),
                )
            }
            Filter::Dbs(dbs) => {
                let marks = vec!["?"; dbs.len()].join(",");
                (
                    format!("{schema_col} IN ({marks})"),
                    dbs.iter().map(|d| Value::from(d.as_str())).collect(),
                )
            }
            Filter::Table(db, table) => (
                format!("{schema_col} = ? AND {table_col} = ?"),
                vec![Value::from(*db), Value::from(*table)],
            ),
        }
    }
}

fn server_err(what: &str) -> impl Fn(mysql_async::Error) -> SchemaError + '_ {
    move |e| SchemaError::Server(format!("{what}: {e}"))
}

fn params(values: Vec<Value>) -> Params {
    if values.is_empty() {
        Params::Empty
    } else {
        Params::Positional(values)
    }
}

/// A value read as text, whatever the protocol sent.
fn text(row: &Row, i: usize) -> Option<String> {
    match row.as_ref(i)? {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::UInt(n) => Some(n.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(f) => Some(f.to_string()),
        other => Some(format!("{other:?}")),
    }
}

fn number(row: &Row, i: usize) -> Option<u64> {
    match row.as_ref(i)? {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::UInt(n) => Some(*n),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

fn required(row: &Row, i: usize, what: &str) -> Result<String, SchemaError> {
    text(row, i).ok_or_else(|| SchemaError::Parse(format!("information_schema returned no {what}")))
}

/// The labels of an ENUM or SET from its `COLUMN_TYPE`
/// (`enum('a','it''s','x,y')` → `a`, `it's`, `x,y`).
pub fn parse_enum_labels(column_type: &str) -> Vec<String> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let mut labels = Vec::new();
    let mut chars = column_type[open + 1..].chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let Some(quote) = chars.next() else { break };
        if quote != '\'' && quote != '"' {
            break; // ')' or anything unexpected ends the list
        }
        let mut label = String::new();
        while let Some(c) = chars.next() {
            if c == quote {
                if chars.peek() == Some(&quote) {
                    chars.next();
                    label.push(quote);
                    continue;
                }
                break;
            }
            if c == '\\' {
                match chars.next() {
                    Some('n') => label.push('\n'),
                    Some('r') => label.push('\r'),
                    Some('t') => label.push('\t'),
                    Some('0') => label.push('\0'),
                    Some('Z') => label.push('\u{1a}'),
                    Some(other) => label.push(other),
                    None => label.push('\\'),
                }
                continue;
            }
            label.push(c);
        }
        labels.push(label);
    }
    labels
}

fn column_from(
    data_type: &str,
    column_type: &str,
    name: String,
    nullable: &str,
    charset: Option<String>,
    extra: &str,
) -> ColumnDef {
    let data_type = data_type.trim().to_ascii_lowercase();
    let lower_type = column_type.to_ascii_lowercase();
    let extra = extra.to_ascii_uppercase();
    let labels = if data_type == "enum" || data_type == "set" {
        parse_enum_labels(column_type)
    } else {
        Vec::new()
    };
    ColumnDef {
        name,
        unsigned: lower_type.contains("unsigned"),
        column_type: column_type.to_string(),
        data_type,
        nullable: nullable.eq_ignore_ascii_case("YES"),
        charset: charset.map(|c| normalize_charset(&c)),
        labels,
        generated: extra.contains("VIRTUAL GENERATED")
            || extra.contains("STORED GENERATED")
            || extra.contains("PERSISTENT")
            || extra.trim() == "VIRTUAL",
        invisible: extra.contains("INVISIBLE"),
    }
}

/// MariaDB's JSON is LONGTEXT with a `json_valid(col)` CHECK constraint;
/// information_schema shows `longtext`, so the constraint tells which columns
/// hold JSON. Servers without CHECK_CONSTRAINTS leave the columns as they are.
async fn mark_mariadb_json(
    conn: &mut Conn,
    filter: &Filter<'_>,
    columns: &mut BTreeMap<TableKey, Vec<(u64, ColumnDef)>>,
) {
    let (cond, values) = filter.condition("CONSTRAINT_SCHEMA", "TABLE_NAME");
    let sql = format!(
        "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
         WHERE CHECK_CLAUSE LIKE 'json_valid(%' AND {cond}"
    );
    let Ok(rows) = conn.exec::<Row, _, _>(sql, params(values)).await else {
        return;
    };
    for row in &rows {
        let (Some(db), Some(table), Some(clause)) = (text(row, 0), text(row, 1), text(row, 2))
        else {
            continue;
        };
        let inner = clause
            .trim()
            .strip_prefix("json_valid(")
            .and_then(|r| r.strip_suffix(')'))
            .map(|c| c.trim().trim_matches('`').replace("``", "`"));
        let Some(col_name) = inner else { continue };
        if let Some(cols) = columns.get_mut(&(db, table)) {
            for (_, c) in cols.iter_mut() {
                if c.name == col_name && c.data_type == "longtext" {
                    c.data_type = "json".into();
                }
            }
        }
    }
}

async fn load_tables(
    conn: &mut Conn,
    filter: Filter<'_>,
) -> Result<Vec<(TableSchema, TableMeta)>, SchemaError> {
    if let Filter::Dbs(d) = filter {
        if d.is_empty() {
            return Ok(Vec::new());
        }
    }
    // MySQL 8.0.30+ hides generated invisible primary keys unless asked;
    // other servers reject the variable, which is fine.
    let _ = conn
        .query_drop("SET SESSION show_gipk_in_create_table_and_information_schema = ON")
        .await;

    let (cond, values) = filter.condition("c.TABLE_SCHEMA", "c.TABLE_NAME");
    let sql = format!(
        "SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.ORDINAL_POSITION, c.DATA_TYPE, \
         c.COLUMN_TYPE, c.IS_NULLABLE, c.CHARACTER_SET_NAME, c.EXTRA \
         FROM information_schema.COLUMNS c \
         JOIN information_schema.TABLES t \
           ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
         WHERE t.TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') AND {cond} \
         ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION"
    );
    let rows: Vec<Row> = conn
        .exec(sql, params(values))
        .await
        .map_err(server_err("reading information_schema.COLUMNS"))?;
    let mut columns: BTreeMap<TableKey, Vec<(u64, ColumnDef)>> = BTreeMap::new();
    for row in &rows {
        let db = required(row, 0, "TABLE_SCHEMA")?;
        let table = required(row, 1, "TABLE_NAME")?;
        let name = required(row, 2, "COLUMN_NAME")?;
        let ordinal = number(row, 3).unwrap_or(u64::MAX);
        let data_type = required(row, 4, "DATA_TYPE")?;
        let column_type = text(row, 5).unwrap_or_else(|| data_type.clone());
        let nullable = text(row, 6).unwrap_or_default();
        let charset = text(row, 7);
        let extra = text(row, 8).unwrap_or_default();
        let col = column_from(&data_type, &column_type, name, &nullable, charset, &extra);
        columns.entry((db, table)).or_default().push((ordinal, col));
    }
    if columns.is_empty() {
        return Ok(Vec::new());
    }
    mark_mariadb_json(conn, &filter, &mut columns).await;

    let (cond, values) = filter.condition("TABLE_SCHEMA", "TABLE_NAME");
    let sql = format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_COLLATION FROM information_schema.TABLES \
         WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') AND {cond}"
    );
    let rows: Vec<Row> = conn
        .exec(sql, params(values))
        .await
        .map_err(server_err("reading information_schema.TABLES"))?;
    let mut charsets: BTreeMap<TableKey, String> = BTreeMap::new();
    for row in &rows {
        let (Some(db), Some(table)) = (text(row, 0), text(row, 1)) else {
            continue;
        };
        if let Some(cs) = text(row, 2).as_deref().and_then(charset_of_collation) {
            charsets.insert((db, table), cs);
        }
    }

    let (cond, values) = filter.condition("TABLE_SCHEMA", "TABLE_NAME");
    let sql = format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, COLUMN_NAME \
         FROM information_schema.STATISTICS WHERE {cond}"
    );
    let rows: Vec<Row> = conn
        .exec(sql, params(values))
        .await
        .map_err(server_err("reading information_schema.STATISTICS"))?;
    // Indexes in the order the server lists them (PRIMARY, then UNIQUE ...).
    type Parts = Vec<(u64, Option<String>)>;
    let mut indexes: BTreeMap<TableKey, Vec<(String, bool, Parts)>> = BTreeMap::new();
    for row in &rows {
        let (Some(db), Some(table), Some(index)) = (text(row, 0), text(row, 1), text(row, 2))
        else {
            continue;
        };
        let unique = number(row, 3) == Some(0);
        let seq = number(row, 4).unwrap_or(u64::MAX);
        let column = text(row, 5);
        let list = indexes.entry((db, table)).or_default();
        match list.iter_mut().find(|(n, _, _)| *n == index) {
            Some((_, _, parts)) => parts.push((seq, column)),
            None => list.push((index, unique, vec![(seq, column)])),
        }
    }

    let mut out = Vec::with_capacity(columns.len());
    for (key, mut cols) in columns {
        cols.sort_by_key(|(ordinal, _)| *ordinal);
        let cols: Vec<ColumnDef> = cols.into_iter().map(|(_, c)| c).collect();
        let mut meta = TableMeta {
            charset: charsets.get(&key).cloned(),
            indexes: Vec::new(),
        };
        for (name, unique, mut parts) in indexes.remove(&key).unwrap_or_default() {
            parts.sort_by_key(|(seq, _)| *seq);
            let primary = name.eq_ignore_ascii_case("PRIMARY");
            meta.indexes.push(IndexDef {
                has_expression: parts.iter().any(|(_, c)| c.is_none()),
                columns: parts.into_iter().filter_map(|(_, c)| c).collect(),
                name,
                primary,
                unique: unique || primary,
            });
        }
        // PRIMARY first, as the server uses it.
        meta.indexes.sort_by_key(|ix| !ix.primary);
        let primary_key = meta.key_columns(&cols);
        let schema = TableSchema {
            db: key.0,
            table: key.1,
            columns: cols,
            primary_key,
        };
        out.push((schema, meta));
    }
    Ok(out)
}

/// Reads the database charsets and `@@character_set_server`.
async fn load_charsets(
    conn: &mut Conn,
    filter: Filter<'_>,
) -> Result<(BTreeMap<String, String>, Option<String>), SchemaError> {
    let (cond, values) = filter.condition("SCHEMA_NAME", "SCHEMA_NAME");
    let sql = format!("SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA WHERE {cond}");
    let rows: Vec<Row> = match filter {
        Filter::Dbs([]) => Vec::new(),
        _ => conn
            .exec(sql, params(values))
            .await
            .map_err(server_err("reading information_schema.SCHEMATA"))?,
    };
    let mut dbs = BTreeMap::new();
    for row in &rows {
        if let (Some(db), Some(cs)) = (text(row, 0), text(row, 1)) {
            dbs.insert(db, normalize_charset(&cs));
        }
    }
    let rows: Vec<Row> = conn
        .query("SELECT @@character_set_server")
        .await
        .map_err(server_err("reading @@character_set_server"))?;
    let server = rows
        .first()
        .and_then(|r| text(r, 0))
        .map(|c| normalize_charset(&c));
    Ok((dbs, server))
}

/// Reads the schemas of all base tables of `dbs` (all databases but the
/// system schemas when `None`), with their indexes and charsets.
pub async fn load_snapshot(
    conn: &mut Conn,
    dbs: Option<&[String]>,
) -> Result<SchemaSnapshot, SchemaError> {
    let filter = match dbs {
        Some(d) => Filter::Dbs(d),
        None => Filter::All,
    };
    let tables = load_tables(conn, filter).await?;
    let (db_charsets, server_charset) = load_charsets(conn, filter).await?;
    Ok(SchemaSnapshot {
        tables,
        db_charsets,
        server_charset,
        dbs: dbs.map(<[String]>::to_vec),
    })
}

/// Reads the schemas of all base tables of `dbs` (all databases but the
/// system schemas when `None`), ordered by database, table.
pub async fn load_schemas(
    conn: &mut Conn,
    dbs: Option<&[String]>,
) -> Result<Vec<TableSchema>, SchemaError> {
    let filter = match dbs {
        Some(d) => Filter::Dbs(d),
        None => Filter::All,
    };
    Ok(load_tables(conn, filter)
        .await?
        .into_iter()
        .map(|(t, _)| t)
        .collect())
}

/// Reads one table's schema with its indexes and charset; `None` when no such
/// base table exists.
pub async fn load_table_full(
    conn: &mut Conn,
    db: &str,
    table: &str,
) -> Result<Option<(TableSchema, TableMeta)>, SchemaError> {
    Ok(load_tables(conn, Filter::Table(db, table))
        .await?
        .into_iter()
        .next())
}

/// Reads one table's schema; `None` when no such base table exists.
pub async fn load_table(
    conn: &mut Conn,
    db: &str,
    table: &str,
) -> Result<Option<TableSchema>, SchemaError> {
    Ok(load_table_full(conn, db, table).await?.map(|(t, _)| t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_labels_from_column_type() {
        assert_eq!(parse_enum_labels("enum('a','b')"), vec!["a", "b"]);
        assert_eq!(
            parse_enum_labels("set('it''s','x,y','')"),
            vec!["it's", "x,y", ""]
        );
        assert_eq!(
            parse_enum_labels("enum('a\\\\b','c\\'d')"),
            vec!["a\\b", "c'd"]
        );
        assert_eq!(parse_enum_labels("enum('(',')')"), vec!["(", ")"]);
        assert_eq!(parse_enum_labels("int(11)"), Vec::<String>::new());
        assert_eq!(parse_enum_labels("enum"), Vec::<String>::new());
    }

    #[test]
    fn columns_from_information_schema_text() {
        let c = column_from(
            "INT",
            "int(10) unsigned zerofill",
            "id".into(),
            "NO",
            None,
            "auto_increment",
        );
        assert_eq!(
            (
                c.data_type.as_str(),
                c.unsigned,
                c.nullable,
                c.generated,
                c.invisible
            ),
            ("int", true, false, false, false)
        );
        let c = column_from(
            "enum",
            "enum('x','y')",
            "e".into(),
            "YES",
            Some("utf8".into()),
            "",
        );
        assert_eq!(c.labels, vec!["x", "y"]);
        assert_eq!(c.charset.as_deref(), Some("utf8mb3"));
        assert!(c.nullable);
        let c = column_from("int", "int", "g".into(), "YES", None, "VIRTUAL GENERATED");
        assert!(c.generated);
        let c = column_from(
            "int",
            "int",
            "g".into(),
            "YES",
            None,
            "STORED GENERATED INVISIBLE",
        );
        assert!(c.generated && c.invisible);
        let c = column_from(
            "timestamp",
            "timestamp",
            "t".into(),
            "NO",
            None,
            "DEFAULT_GENERATED on update CURRENT_TIMESTAMP",
        );
        assert!(
            !c.generated,
            "a default expression is not a generated column"
        );
        let c = column_from("inet6", "inet6", "ip".into(), "YES", None, "INVISIBLE");
        assert!(c.invisible && c.data_type == "inet6");
    }

    #[test]
    fn filters() {
        let (cond, v) = Filter::All.condition("s", "t");
        assert!(cond.contains("NOT IN") && cond.contains("'performance_schema'") && v.is_empty());
        let dbs = vec!["a".to_string(), "b".to_string()];
        let (cond, v) = Filter::Dbs(&dbs).condition("s", "t");
        assert_eq!(cond, "s IN (?,?)");
        assert_eq!(v.len(), 2);
        let (cond, v) = Filter::Table("d", "x").condition("s", "t");
        assert_eq!(cond, "s = ? AND t = ?");
        assert_eq!(v.len(), 2);
    }
}
