//! Column definitions and keys of MySQL DDL, translated.

use sqlparser::tokenizer::Token;

use super::super::types::{ident, pg_type, push_quoted};
use super::cursor::{split_commas, Cur, R};
use super::index_name;

/// A column definition, translated.
#[derive(Debug, Default)]
pub(super) struct ColDef {
    pub(super) name: String,
    pub(super) pg_type: String,
    pub(super) not_null: bool,
    pub(super) default: Option<String>,
    pub(super) primary_key: bool,
    pub(super) unique: bool,
}

impl ColDef {
    pub(super) fn sql(&self) -> String {
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
pub(super) fn column_def(c: &mut Cur) -> R<ColDef> {
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
pub(super) fn default_value(c: &mut Cur, def: &ColDef) -> R<Option<String>> {
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
        // b'101': PostgreSQL reads the same digits as a bit string.
        Some(Token::SingleQuotedByteStringLiteral(bits)) if def.pg_type.starts_with("bit") => {
            let mut s = String::new();
            push_quoted(&mut s, &bits);
            s
        }
        // X'0A0B' into a binary column.
        Some(Token::HexStringLiteral(hex)) if def.pg_type == "bytea" => {
            let mut s = String::new();
            push_quoted(&mut s, &format!("\\x{hex}"));
            s
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

pub(super) fn literal_for(value: &str, def: &ColDef, temporal: bool) -> String {
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
pub(super) fn key_columns(c: &mut Cur) -> R<Vec<String>> {
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
pub(super) enum Key {
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
pub(super) fn key_def(c: &mut Cur) -> R<Option<Key>> {
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

pub(super) fn skip_index_type(c: &mut Cur) {
    if c.eat_kw("USING") {
        c.next();
    }
}

pub(super) fn create_index_sql(
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
