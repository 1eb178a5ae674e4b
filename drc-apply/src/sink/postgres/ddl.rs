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

use std::cell::Cell;

use drc_capture::schema::ddl::tokenize;
use sqlparser::tokenizer::Token;

use super::config::{PostgresSinkConfig, MAX_IDENT_LEN};
use super::types::{ident, pg_type, push_quoted, table_ref};

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

type R<T> = Result<T, String>;

struct Cur<'a> {
    t: &'a [Token],
    i: usize,
    db: &'a str,
    cfg: &'a PostgresSinkConfig,
    /// Set when the statement names the `drc` database.
    bookkeeping: &'a Cell<bool>,
}

fn is_kw(t: &Token, kw: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

fn kw_of(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// Splits at commas outside parentheses; empty pieces are dropped.
fn split_commas(t: &[Token]) -> Vec<&[Token]> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, tok) in t.iter().enumerate() {
        match tok {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Comma if depth == 0 => {
                if i > start {
                    out.push(&t[start..i]);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if t.len() > start {
        out.push(&t[start..]);
    }
    out
}

impl<'a> Cur<'a> {
    fn sub(&self, t: &'a [Token]) -> Cur<'a> {
        Cur {
            t,
            i: 0,
            db: self.db,
            cfg: self.cfg,
            bookkeeping: self.bookkeeping,
        }
    }

    fn peek(&self) -> Option<&'a Token> {
        self.t.get(self.i)
    }

    fn done(&self) -> bool {
        self.i >= self.t.len()
    }

    fn peek_kw(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| is_kw(t, kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek_kw(kw) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn eat_kws(&mut self, kws: &[&str]) -> bool {
        let all = kws
            .iter()
            .enumerate()
            .all(|(k, kw)| self.t.get(self.i + k).is_some_and(|t| is_kw(t, kw)));
        if all {
            self.i += kws.len();
        }
        all
    }

    fn eat(&mut self, tok: &Token) -> bool {
        if self.peek() == Some(tok) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn next(&mut self) -> Option<&'a Token> {
        let t = self.t.get(self.i);
        self.i += 1;
        t
    }

    fn ident(&mut self, what: &str) -> R<String> {
        match self.next() {
            Some(Token::Word(w)) => Ok(w.value.clone()),
            // ANSI_QUOTES-style names and quoted names in some dumps.
            Some(Token::DoubleQuotedString(s)) => Ok(s.clone()),
            other => Err(format!(
                "expected {what}, found {}",
                other.map_or("the end".into(), |t| format!("`{t}`"))
            )),
        }
    }

    /// `name` or `db.name` → (db, name).
    fn qname(&mut self) -> R<(String, String)> {
        let first = self.ident("a table name")?;
        if self.eat(&Token::Period) {
            let second = self.ident("a table name")?;
            self.note_db(&first);
            Ok((first, second))
        } else if self.db.is_empty() {
            Err(format!(
                "table `{first}` is not qualified and the statement ran with no default database"
            ))
        } else {
            self.note_db(self.db);
            Ok((self.db.to_owned(), first))
        }
    }

    fn note_db(&self, db: &str) {
        if db.eq_ignore_ascii_case(super::checkpoint::SCHEMA) {
            self.bookkeeping.set(true);
        }
    }

    /// The target `"schema"."table"` of a source name.
    fn target(&self, q: &(String, String)) -> String {
        table_ref(self.cfg.schema_of(&q.0), &q.1)
    }

    /// The tokens of the parenthesized group at the cursor (without the
    /// parentheses); the cursor moves past it.
    fn group(&mut self) -> R<&'a [Token]> {
        if !self.eat(&Token::LParen) {
            return Err("expected `(`".into());
        }
        let start = self.i;
        let mut depth = 1usize;
        while let Some(t) = self.next() {
            match t {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(&self.t[start..self.i - 1]);
                    }
                }
                _ => {}
            }
        }
        Err("unbalanced parentheses".into())
    }

    fn rest_is_empty(&self, what: &str) -> R<()> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(format!("unexpected `{t}` after {what}")),
        }
    }
}

fn statement_of(c: &mut Cur) -> R<Translation> {
    let Some(verb) = c.peek().and_then(kw_of) else {
        return Err("not a statement this sink knows".into());
    };
    c.i += 1;
    match verb.as_str() {
        "CREATE" => {
            c.eat_kws(&["OR", "REPLACE"]);
            if c.eat_kw("DATABASE") || c.eat_kw("SCHEMA") {
                let if_not = c.eat_kws(&["IF", "NOT", "EXISTS"]);
                let db = c.ident("a database name")?;
                c.note_db(&db);
                return Ok(one(format!(
                    "CREATE SCHEMA {}{}",
                    if if_not { "IF NOT EXISTS " } else { "" },
                    ident(c.cfg.schema_of(&db))
                )));
            }
            if c.eat_kw("TEMPORARY") {
                return Ok(Translation::NoOp("temporary table".into()));
            }
            if c.eat_kw("TABLE") {
                return create_table(c);
            }
            let unique = c.eat_kw("UNIQUE");
            c.eat_kw("FULLTEXT");
            if c.eat_kw("INDEX") {
                return create_index(c, unique);
            }
            Err("only CREATE DATABASE, TABLE and INDEX are translated".into())
        }
        "ALTER" => {
            c.eat_kw("ONLINE");
            c.eat_kw("IGNORE");
            if c.eat_kw("TABLE") {
                return alter_table(c);
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

/// A column definition, translated.
#[derive(Debug, Default)]
struct ColDef {
    name: String,
    pg_type: String,
    not_null: bool,
    default: Option<String>,
    primary_key: bool,
    unique: bool,
}

impl ColDef {
    fn sql(&self) -> String {
        let mut s = ident(&self.name);
        s.push(' ');
        s.push_str(&self.pg_type);
        if let Some(d) = &self.default {
            s.push_str(" DEFAULT ");
            s.push_str(d);
        }
        if self.not_null {
            s.push_str(" NOT NULL");
        }
        s
    }
}

/// Reads `name type attributes...` (the whole slice).
fn column_def(c: &mut Cur) -> R<ColDef> {
    let name = c.ident("a column name")?;
    let mut def = ColDef {
        name,
        ..Default::default()
    };
    // The type: words, then an optional (args), then modifiers.
    c.eat_kw("NATIONAL");
    let base = match c.next() {
        Some(Token::Word(w)) => w.value.to_ascii_lowercase(),
        _ => return Err(format!("column `{}` has no type", def.name)),
    };
    let mut mysql_type = base.clone();
    if base == "double" {
        c.eat_kw("PRECISION");
    }
    if base == "long" && (c.eat_kw("VARCHAR") || c.eat_kw("VARBINARY")) {
        mysql_type = "mediumtext".into();
    }
    if c.peek() == Some(&Token::LParen) {
        let args = c.group()?;
        if base != "enum" && base != "set" {
            let text: Vec<String> = args.iter().map(|t| t.to_string()).collect();
            mysql_type.push('(');
            mysql_type.push_str(&text.join(""));
            mysql_type.push(')');
        }
    }
    loop {
        if c.eat_kw("UNSIGNED") || c.eat_kw("ZEROFILL") {
            mysql_type.push_str(" unsigned");
        } else if c.eat_kw("SIGNED")
            || c.eat_kw("BINARY")
            || c.eat_kw("ASCII")
            || c.eat_kw("UNICODE")
            || c.eat_kw("BYTE")
        {
        } else if c.eat_kws(&["CHARACTER", "SET"]) || c.eat_kw("CHARSET") || c.eat_kw("COLLATE") {
            c.next();
        } else {
            break;
        }
    }
    def.pg_type = pg_type(&mysql_type)?;
    // Attributes.
    while !c.done() {
        if c.eat_kws(&["NOT", "NULL"]) {
            def.not_null = true;
        } else if c.eat_kw("NULL") {
            def.not_null = false;
        } else if c.eat_kw("DEFAULT") {
            def.default = default_value(c, &def)?;
        } else if c.eat_kw("AUTO_INCREMENT")
            || c.eat_kw("INVISIBLE")
            || c.eat_kw("VISIBLE")
            || c.eat_kw("SERIAL")
        {
        } else if c.eat_kws(&["PRIMARY", "KEY"]) || c.eat_kw("KEY") {
            def.primary_key = true;
            def.not_null = true;
        } else if c.eat_kw("UNIQUE") {
            c.eat_kw("KEY");
            def.unique = true;
        } else if c.eat_kw("COMMENT")
            || c.eat_kw("COLUMN_FORMAT")
            || c.eat_kw("STORAGE")
            || c.eat_kw("SRID")
            || c.eat_kw("COLLATE")
            || c.eat_kw("CHARSET")
            || c.eat_kws(&["CHARACTER", "SET"])
        {
            c.next();
        } else if c.eat_kws(&["GENERATED", "ALWAYS", "AS"]) || c.eat_kw("AS") {
            // The source's computed values are replicated as plain values.
            c.group()?;
            let _ = c.eat_kw("VIRTUAL") || c.eat_kw("STORED") || c.eat_kw("PERSISTENT");
        } else if c.eat_kws(&["ON", "UPDATE"]) {
            c.next();
            if c.peek() == Some(&Token::LParen) {
                c.group()?;
            }
        } else if c.eat_kw("CONSTRAINT") {
            if !c.peek_kw("CHECK") {
                c.next();
            }
        } else if c.eat_kw("CHECK") {
            c.group()?;
        } else if c.eat_kw("REFERENCES") {
            // A foreign key: not translated; skip to the end of the column.
            c.i = c.t.len();
        } else {
            return Err(format!(
                "column `{}`: attribute `{}` is not translated",
                def.name,
                c.peek().map(|t| t.to_string()).unwrap_or_default()
            ));
        }
    }
    Ok(def)
}

/// The PostgreSQL form of a `DEFAULT` value: literals, NULL and the current
/// time; `None` when the column has no default.
fn default_value(c: &mut Cur, def: &ColDef) -> R<Option<String>> {
    let temporal = def.pg_type.starts_with("date") || def.pg_type.starts_with("timestamp");
    let tok = c.next().cloned();
    let out = match tok {
        Some(Token::Number(n, _)) => literal_for(&n, def, temporal),
        Some(Token::Minus) => match c.next() {
            Some(Token::Number(n, _)) => literal_for(&format!("-{n}"), def, temporal),
            _ => return Err(format!("column `{}`: unreadable DEFAULT", def.name)),
        },
        Some(Token::SingleQuotedString(s)) | Some(Token::DoubleQuotedString(s)) => {
            literal_for(&s, def, temporal)
        }
        Some(Token::Word(w)) if w.quote_style.is_none() => {
            match w.value.to_ascii_uppercase().as_str() {
                "NULL" => return Ok(None),
                "TRUE" => "1".into(),
                "FALSE" => "0".into(),
                "CURRENT_TIMESTAMP" | "NOW" | "LOCALTIMESTAMP" | "LOCALTIME" => {
                    if c.peek() == Some(&Token::LParen) {
                        c.group()?;
                    }
                    "CURRENT_TIMESTAMP".into()
                }
                other => {
                    return Err(format!(
                        "column `{}`: DEFAULT {other} is not translated",
                        def.name
                    ))
                }
            }
        }
        Some(Token::LParen) => {
            return Err(format!(
                "column `{}`: DEFAULT expressions are not translated",
                def.name
            ))
        }
        other => {
            return Err(format!(
                "column `{}`: DEFAULT {} is not translated",
                def.name,
                other.map(|t| t.to_string()).unwrap_or_default()
            ))
        }
    };
    Ok(Some(out))
}

fn literal_for(value: &str, def: &ColDef, temporal: bool) -> String {
    // MySQL's zero dates, per the type mapping.
    if temporal
        && value
            .bytes()
            .all(|b| matches!(b, b'0' | b'-' | b':' | b' ' | b'.'))
    {
        return "'-infinity'".into();
    }
    if def.pg_type == "bytea" {
        let mut hex = String::from("\\x");
        for b in value.bytes() {
            hex.push_str(&format!("{b:02x}"));
        }
        let mut s = String::new();
        push_quoted(&mut s, &hex);
        return s;
    }
    let mut s = String::new();
    push_quoted(&mut s, value);
    s
}

/// `(a, b(10) DESC, ...)` of a key → `"a", "b"`.
fn key_columns(c: &mut Cur) -> R<Vec<String>> {
    let inner = c.group()?;
    let mut cols = Vec::new();
    for part in split_commas(inner) {
        match part.first() {
            Some(Token::Word(w)) => cols.push(ident(&w.value)),
            _ => return Err("key part is an expression, which is not translated".into()),
        }
    }
    if cols.is_empty() {
        return Err("a key with no column".into());
    }
    Ok(cols)
}

/// A key of `CREATE TABLE` or `ALTER TABLE ADD`, after an optional
/// `CONSTRAINT [name]`.
enum Key {
    Primary(Vec<String>),
    Index {
        unique: bool,
        name: String,
        cols: Vec<String>,
    },
    /// Foreign keys, checks, full-text and spatial keys.
    Ignored,
}

/// Reads a key definition at the cursor, or `None` when the tokens are not
/// one (then the cursor has not moved).
fn key_def(c: &mut Cur) -> R<Option<Key>> {
    let start = c.i;
    let mut constraint_name = None;
    if c.eat_kw("CONSTRAINT")
        && !c.peek_kw("PRIMARY")
        && !c.peek_kw("UNIQUE")
        && !c.peek_kw("FOREIGN")
        && !c.peek_kw("CHECK")
    {
        constraint_name = Some(c.ident("a constraint name")?);
    }
    if c.eat_kws(&["PRIMARY", "KEY"]) {
        skip_index_type(c);
        return Ok(Some(Key::Primary(key_columns(c)?)));
    }
    if c.eat_kw("FOREIGN") || c.eat_kw("CHECK") || c.eat_kw("FULLTEXT") || c.eat_kw("SPATIAL") {
        c.i = c.t.len();
        return Ok(Some(Key::Ignored));
    }
    let unique = c.eat_kw("UNIQUE");
    let keyword = c.eat_kw("KEY") || c.eat_kw("INDEX");
    if !unique && !keyword {
        c.i = start;
        return Ok(None);
    }
    let _ = c.eat_kws(&["IF", "NOT", "EXISTS"]);
    let mut name = constraint_name;
    if c.peek() != Some(&Token::LParen) && !c.peek_kw("USING") {
        name = Some(c.ident("an index name")?);
    }
    skip_index_type(c);
    let cols = key_columns(c)?;
    let name = name.unwrap_or_else(|| {
        // MySQL names an unnamed key after its first column.
        cols[0].trim_matches('"').replace("\"\"", "\"")
    });
    Ok(Some(Key::Index { unique, name, cols }))
}

fn skip_index_type(c: &mut Cur) {
    if c.eat_kw("USING") {
        c.next();
    }
}

fn create_index_sql(
    c: &Cur,
    q: &(String, String),
    unique: bool,
    name: &str,
    cols: &[String],
) -> String {
    format!(
        "CREATE {}INDEX {} ON {} ({})",
        if unique { "UNIQUE " } else { "" },
        ident(&index_name(&q.1, name)),
        c.target(q),
        cols.join(", ")
    )
}

fn create_index(c: &mut Cur, unique: bool) -> R<Translation> {
    let _ = c.eat_kws(&["IF", "NOT", "EXISTS"]);
    let name = c.ident("an index name")?;
    skip_index_type(c);
    if !c.eat_kw("ON") {
        return Err("CREATE INDEX without ON <table>".into());
    }
    let q = c.qname()?;
    let cols = key_columns(c)?;
    Ok(one(create_index_sql(c, &q, unique, &name, &cols)))
}

fn create_table(c: &mut Cur) -> R<Translation> {
    let if_not = c.eat_kws(&["IF", "NOT", "EXISTS"]);
    let q = c.qname()?;
    let target = c.target(&q);
    let head = format!(
        "CREATE TABLE {}{target}",
        if if_not { "IF NOT EXISTS " } else { "" }
    );
    if c.eat_kw("LIKE") {
        let from = c.qname()?;
        return Ok(one(format!(
            "{head} (LIKE {} INCLUDING ALL)",
            c.target(&from)
        )));
    }
    if c.peek() != Some(&Token::LParen) {
        return Err("CREATE TABLE without a column list (CREATE TABLE ... SELECT)".into());
    }
    let body = c.group()?;
    if body.first().is_some_and(|t| is_kw(t, "LIKE")) {
        let mut p = c.sub(&body[1..]);
        let from = p.qname()?;
        return Ok(one(format!(
            "{head} (LIKE {} INCLUDING ALL)",
            c.target(&from)
        )));
    }
    // Table options may follow; a query or system versioning may not.
    for t in &c.t[c.i..] {
        if is_kw(t, "SELECT") || is_kw(t, "VERSIONING") {
            return Err(format!("CREATE TABLE ... {t} is not translated"));
        }
    }
    let mut columns = Vec::new();
    let mut primary: Option<Vec<String>> = None;
    let mut indexes = Vec::new();
    for part in split_commas(body) {
        let mut p = c.sub(part);
        if p.peek_kw("PERIOD") {
            return Err("PERIOD FOR is not translated".into());
        }
        if let Some(key) = key_def(&mut p)? {
            match key {
                Key::Primary(cols) => primary = Some(cols),
                Key::Index { unique, name, cols } => {
                    indexes.push(create_index_sql(c, &q, unique, &name, &cols));
                }
                Key::Ignored => {}
            }
            continue;
        }
        let def = column_def(&mut p)?;
        if def.primary_key {
            primary = Some(vec![ident(&def.name)]);
        }
        if def.unique {
            indexes.push(create_index_sql(
                c,
                &q,
                true,
                &def.name,
                &[ident(&def.name)],
            ));
        }
        columns.push(def);
    }
    if columns.is_empty() {
        return Err("CREATE TABLE with no column".into());
    }
    let mut items: Vec<String> = columns.iter().map(ColDef::sql).collect();
    if let Some(pk) = primary {
        items.push(format!("PRIMARY KEY ({})", pk.join(", ")));
    }
    let mut out = vec![format!("{head} ({})", items.join(", "))];
    if if_not {
        // The indexes of a table that already existed are left alone.
        indexes = indexes
            .into_iter()
            .map(|s| s.replacen("INDEX ", "INDEX IF NOT EXISTS ", 1))
            .collect();
    }
    out.extend(indexes);
    Ok(Translation::Statements(out))
}

/// What `MODIFY`/`CHANGE` does to column `name`: a MySQL column definition
/// replaces the whole previous one.
fn redefine(target: &str, old: &str, def: &ColDef) -> Vec<String> {
    let mut out = Vec::new();
    let col = ident(&def.name);
    if old != def.name {
        out.push(format!(
            "ALTER TABLE {target} RENAME COLUMN {} TO {col}",
            ident(old)
        ));
    }
    out.push(format!(
        "ALTER TABLE {target} ALTER COLUMN {col} DROP DEFAULT, \
         ALTER COLUMN {col} TYPE {ty} USING {col}::{ty}, \
         ALTER COLUMN {col} {} NOT NULL{}",
        if def.not_null { "SET" } else { "DROP" },
        def.default
            .as_ref()
            .map(|d| format!(", ALTER COLUMN {col} SET DEFAULT {d}"))
            .unwrap_or_default(),
        ty = def.pg_type,
    ));
    out
}

fn alter_table(c: &mut Cur) -> R<Translation> {
    let q = c.qname()?;
    let target = c.target(&q);
    let rest = &c.t[c.i..];
    let mut out = Vec::new();
    let mut last = Vec::new();
    let mut skipped = Vec::new();
    for part in split_commas(rest) {
        let mut p = c.sub(part);
        let Some(word) = p.peek().and_then(kw_of) else {
            return Err(format!(
                "ALTER TABLE clause `{}` is not translated",
                part.first().map(|t| t.to_string()).unwrap_or_default()
            ));
        };
        p.i += 1;
        match word.as_str() {
            "ADD" => {
                if let Some(key) = key_def(&mut p)? {
                    match key {
                        Key::Primary(cols) => out.push(format!(
                            "ALTER TABLE {target} ADD PRIMARY KEY ({})",
                            cols.join(", ")
                        )),
                        Key::Index { unique, name, cols } => {
                            out.push(create_index_sql(c, &q, unique, &name, &cols))
                        }
                        Key::Ignored => skipped.push("a foreign key, check or full-text key"),
                    }
                    continue;
                }
                p.eat_kw("COLUMN");
                let if_not = p.eat_kws(&["IF", "NOT", "EXISTS"]);
                let defs: Vec<ColDef> = if p.peek() == Some(&Token::LParen) {
                    let inner = p.group()?;
                    split_commas(inner)
                        .into_iter()
                        .map(|d| column_def(&mut c.sub(d)))
                        .collect::<R<_>>()?
                } else {
                    // A position at the end is dropped: PostgreSQL appends.
                    let mut end = part.len();
                    for (k, t) in part.iter().enumerate().skip(p.i) {
                        if is_kw(t, "FIRST") || is_kw(t, "AFTER") {
                            end = k;
                            break;
                        }
                    }
                    vec![column_def(&mut c.sub(&part[p.i..end]))?]
                };
                for def in defs {
                    if def.primary_key || def.unique {
                        return Err("ADD COLUMN with an inline key is not translated".into());
                    }
                    out.push(format!(
                        "ALTER TABLE {target} ADD COLUMN {}{}",
                        if if_not { "IF NOT EXISTS " } else { "" },
                        def.sql()
                    ));
                }
            }
            "DROP" => {
                if p.eat_kws(&["PRIMARY", "KEY"]) {
                    out.push(drop_primary_key(&target));
                } else if p.eat_kw("FOREIGN") || p.eat_kw("CHECK") {
                    skipped.push("a foreign key or check");
                } else if p.eat_kw("INDEX") || p.eat_kw("KEY") || p.eat_kw("CONSTRAINT") {
                    let _ = p.eat_kws(&["IF", "EXISTS"]);
                    let name = p.ident("an index name")?;
                    out.push(format!("DROP INDEX IF EXISTS {}", index_ref(c, &q, &name)));
                } else {
                    p.eat_kw("COLUMN");
                    let if_exists = p.eat_kws(&["IF", "EXISTS"]);
                    let name = p.ident("a column name")?;
                    let _ = p.eat_kw("RESTRICT") || p.eat_kw("CASCADE");
                    p.rest_is_empty("DROP COLUMN")?;
                    out.push(format!(
                        "ALTER TABLE {target} DROP COLUMN {}{}",
                        if if_exists { "IF EXISTS " } else { "" },
                        ident(&name)
                    ));
                }
            }
            "MODIFY" | "CHANGE" => {
                p.eat_kw("COLUMN");
                let _ = p.eat_kws(&["IF", "EXISTS"]);
                let old = if word == "CHANGE" {
                    Some(p.ident("a column name")?)
                } else {
                    None
                };
                let mut end = part.len();
                for (k, t) in part.iter().enumerate().skip(p.i) {
                    if is_kw(t, "FIRST") || is_kw(t, "AFTER") {
                        end = k;
                        break;
                    }
                }
                let def = column_def(&mut c.sub(&part[p.i..end]))?;
                if def.primary_key || def.unique {
                    return Err(format!("{word} with an inline key is not translated"));
                }
                let old = old.unwrap_or_else(|| def.name.clone());
                out.extend(redefine(&target, &old, &def));
            }
            "RENAME" => {
                if p.eat_kw("COLUMN") {
                    let from = p.ident("a column name")?;
                    if !p.eat_kw("TO") {
                        return Err("RENAME COLUMN without TO".into());
                    }
                    let to = p.ident("a column name")?;
                    out.push(format!(
                        "ALTER TABLE {target} RENAME COLUMN {} TO {}",
                        ident(&from),
                        ident(&to)
                    ));
                } else if p.eat_kw("INDEX") || p.eat_kw("KEY") {
                    let from = p.ident("an index name")?;
                    if !p.eat_kw("TO") {
                        return Err("RENAME INDEX without TO".into());
                    }
                    let to = p.ident("an index name")?;
                    out.push(format!(
                        "ALTER INDEX IF EXISTS {} RENAME TO {}",
                        index_ref(c, &q, &from),
                        ident(&index_name(&q.1, &to))
                    ));
                } else {
                    let _ = p.eat_kw("TO") || p.eat_kw("AS");
                    let to = p.qname()?;
                    last.extend(rename_table(c, &q, &to));
                }
            }
            "ALTER" => {
                if p.eat_kw("INDEX") || p.eat_kw("KEY") {
                    skipped.push("index visibility");
                    continue;
                }
                p.eat_kw("COLUMN");
                let _ = p.eat_kws(&["IF", "EXISTS"]);
                let name = p.ident("a column name")?;
                let col = ident(&name);
                if p.eat_kws(&["SET", "DEFAULT"]) {
                    let def = ColDef {
                        name: name.clone(),
                        ..Default::default()
                    };
                    let value = default_value(&mut p, &def)?;
                    out.push(match value {
                        Some(v) => {
                            format!("ALTER TABLE {target} ALTER COLUMN {col} SET DEFAULT {v}")
                        }
                        None => format!("ALTER TABLE {target} ALTER COLUMN {col} DROP DEFAULT"),
                    });
                } else if p.eat_kws(&["DROP", "DEFAULT"]) {
                    out.push(format!(
                        "ALTER TABLE {target} ALTER COLUMN {col} DROP DEFAULT"
                    ));
                } else if p.eat_kws(&["SET", "VISIBLE"]) || p.eat_kws(&["SET", "INVISIBLE"]) {
                    skipped.push("column visibility");
                } else {
                    return Err(format!("ALTER COLUMN `{name}` clause is not translated"));
                }
            }
            "ENGINE" | "AUTO_INCREMENT" | "COMMENT" | "DEFAULT" | "CHARSET" | "CHARACTER"
            | "COLLATE" | "ROW_FORMAT" | "KEY_BLOCK_SIZE" | "ALGORITHM" | "LOCK" | "FORCE"
            | "STATS_PERSISTENT" | "STATS_AUTO_RECALC" | "STATS_SAMPLE_PAGES" | "PACK_KEYS"
            | "CHECKSUM" | "DELAY_KEY_WRITE" | "MAX_ROWS" | "MIN_ROWS" | "AVG_ROW_LENGTH"
            | "CONVERT" | "ENABLE" | "DISABLE" | "PAGE_CHECKSUM" | "TRANSACTIONAL" => {
                skipped.push("table options");
            }
            other => return Err(format!("ALTER TABLE ... {other} is not translated")),
        }
    }
    out.extend(last);
    if out.is_empty() {
        return Ok(Translation::NoOp(format!(
            "only {} (nothing to do on PostgreSQL)",
            skipped.join(", ")
        )));
    }
    Ok(Translation::Statements(out))
}

/// Drops the primary key constraint of `target`, whatever its name.
fn drop_primary_key(target: &str) -> String {
    let mut name = String::new();
    push_quoted(&mut name, target);
    format!(
        "DO $drc$DECLARE n name; BEGIN \
         SELECT conname INTO n FROM pg_constraint WHERE conrelid = {name}::regclass AND contype = 'p'; \
         IF n IS NOT NULL THEN EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', {name}, n); END IF; \
         END$drc$"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(sql: &str) -> Translation {
        translate(sql, "d", &PostgresSinkConfig::new("postgres://u@h/db"))
    }

    fn stmts(sql: &str) -> Vec<String> {
        match tr(sql) {
            Translation::Statements(s) => s,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn create_table() {
        assert_eq!(
            stmts(
                "CREATE TABLE `t` (id INT UNSIGNED NOT NULL AUTO_INCREMENT, v VARCHAR(20) \
                 CHARACTER SET latin1 DEFAULT 'x''y', d DATETIME(3) NOT NULL DEFAULT \
                 '0000-00-00 00:00:00', ts TIMESTAMP NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE \
                 CURRENT_TIMESTAMP, g INT AS (id + 1) VIRTUAL, e ENUM('a','b') COMMENT 'c', \
                 PRIMARY KEY (id), UNIQUE KEY uv (v(10)), KEY (d), FOREIGN KEY (id) REFERENCES u (id)) \
                 ENGINE=InnoDB /* generated by server */"
            ),
            vec![
                "CREATE TABLE \"d\".\"t\" (\"id\" bigint NOT NULL, \"v\" varchar(20) DEFAULT 'x''y', \
                 \"d\" timestamp(3) DEFAULT '-infinity' NOT NULL, \"ts\" timestamptz(0) DEFAULT \
                 CURRENT_TIMESTAMP, \"g\" integer, \"e\" text, PRIMARY KEY (\"id\"))",
                "CREATE UNIQUE INDEX \"t_uv\" ON \"d\".\"t\" (\"v\")",
                "CREATE INDEX \"t_d\" ON \"d\".\"t\" (\"d\")",
            ]
        );
        assert_eq!(
            stmts("CREATE TABLE IF NOT EXISTS other.t LIKE d.u"),
            vec!["CREATE TABLE IF NOT EXISTS \"other\".\"t\" (LIKE \"d\".\"u\" INCLUDING ALL)"]
        );
        assert!(matches!(
            tr("CREATE TABLE t SELECT 1"),
            Translation::Unsupported(_)
        ));
        assert!(matches!(
            tr("CREATE TEMPORARY TABLE t (a INT)"),
            Translation::NoOp(_)
        ));
        assert!(matches!(
            tr("CREATE TABLE IF NOT EXISTS drc.checkpoints (stream VARCHAR(200) PRIMARY KEY)"),
            Translation::NoOp(_)
        ));
        assert!(matches!(
            tr("CREATE DATABASE IF NOT EXISTS drc"),
            Translation::NoOp(_)
        ));
    }

    #[test]
    fn alter_table() {
        assert_eq!(
            stmts(
                "ALTER TABLE t ADD COLUMN note VARCHAR(30) NOT NULL DEFAULT 'n/a' AFTER v, \
                 DROP COLUMN x, RENAME COLUMN a TO b, MODIFY c BIGINT NOT NULL, \
                 CHANGE old new TEXT, ADD INDEX (note), ALGORITHM=INPLACE, RENAME TO d.t2"
            ),
            vec![
                "ALTER TABLE \"d\".\"t\" ADD COLUMN \"note\" varchar(30) DEFAULT 'n/a' NOT NULL",
                "ALTER TABLE \"d\".\"t\" DROP COLUMN \"x\"",
                "ALTER TABLE \"d\".\"t\" RENAME COLUMN \"a\" TO \"b\"",
                "ALTER TABLE \"d\".\"t\" ALTER COLUMN \"c\" DROP DEFAULT, ALTER COLUMN \"c\" TYPE \
                 bigint USING \"c\"::bigint, ALTER COLUMN \"c\" SET NOT NULL",
                "ALTER TABLE \"d\".\"t\" RENAME COLUMN \"old\" TO \"new\"",
                "ALTER TABLE \"d\".\"t\" ALTER COLUMN \"new\" DROP DEFAULT, ALTER COLUMN \"new\" \
                 TYPE text USING \"new\"::text, ALTER COLUMN \"new\" DROP NOT NULL",
                "CREATE INDEX \"t_note\" ON \"d\".\"t\" (\"note\")",
                "ALTER TABLE \"d\".\"t\" RENAME TO \"t2\"",
            ]
        );
        assert!(matches!(
            tr("ALTER TABLE t ENGINE=InnoDB"),
            Translation::NoOp(_)
        ));
        assert!(matches!(
            tr("ALTER TABLE t PARTITION BY HASH(id)"),
            Translation::Unsupported(_)
        ));
    }

    #[test]
    fn other_statements() {
        assert_eq!(
            stmts("RENAME TABLE a TO b, d.c TO e.c"),
            vec![
                "ALTER TABLE \"d\".\"a\" RENAME TO \"b\"",
                "ALTER TABLE \"d\".\"c\" SET SCHEMA \"e\"",
            ]
        );
        assert_eq!(
            stmts("DROP TABLE IF EXISTS `a`, d.b /* generated by server */"),
            vec!["DROP TABLE IF EXISTS \"d\".\"a\", \"d\".\"b\""]
        );
        assert_eq!(stmts("TRUNCATE t"), vec!["TRUNCATE TABLE \"d\".\"t\""]);
        assert_eq!(stmts("CREATE DATABASE w"), vec!["CREATE SCHEMA \"w\""]);
        assert_eq!(
            stmts("DROP DATABASE IF EXISTS w"),
            vec!["DROP SCHEMA IF EXISTS \"w\" CASCADE"]
        );
        for bad in [
            "CREATE VIEW v AS SELECT 1",
            "GRANT ALL ON *.* TO x",
            "CREATE TRIGGER x BEFORE INSERT ON t FOR EACH ROW SET @a = 1",
        ] {
            assert!(matches!(tr(bad), Translation::Unsupported(_)), "{bad}");
        }
        let mut cfg = PostgresSinkConfig::new("postgres://u@h/db");
        cfg.schema_map.insert("d".into(), "replica".into());
        assert_eq!(
            translate("TRUNCATE TABLE t", "d", &cfg),
            Translation::Statements(vec!["TRUNCATE TABLE \"replica\".\"t\"".into()])
        );
        assert!(matches!(
            translate("TRUNCATE TABLE t", "", &cfg),
            Translation::Unsupported(_)
        ));
    }
}
