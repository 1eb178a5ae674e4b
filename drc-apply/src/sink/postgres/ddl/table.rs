//! CREATE TABLE, CREATE INDEX and ALTER TABLE.

use sqlparser::tokenizer::Token;

use super::super::types::{ident, push_quoted};
use super::columns::{
    column_def, create_index_sql, default_value, key_columns, key_def, skip_index_type, ColDef, Key,
};
use super::cursor::{is_kw, kw_of, split_commas, Cur, R};
use super::{index_name, index_ref, one, rename_table, Translation};

pub(super) fn create_index(c: &mut Cur, unique: bool) -> R<Translation> {
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

/// `CREATE [OR REPLACE] TABLE`.
pub(super) fn create_table(c: &mut Cur, or_replace: bool) -> R<Translation> {
    let start = c.i;
    let translated = create_table_only(c)?;
    if !or_replace {
        return Ok(translated);
    }
    let mut again = c.sub(&c.t[start..]);
    again.eat_kws(&["IF", "NOT", "EXISTS"]);
    let q = again.qname()?;
    let mut out = vec![format!("DROP TABLE IF EXISTS {}", c.target(&q))];
    match translated {
        Translation::Statements(s) => out.extend(s),
        other => return Ok(other),
    }
    Ok(Translation::Statements(out))
}

fn create_table_only(c: &mut Cur) -> R<Translation> {
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
pub(super) fn redefine(target: &str, old: &str, def: &ColDef) -> Vec<String> {
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

pub(super) fn alter_table(c: &mut Cur) -> R<Translation> {
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
pub(super) fn drop_primary_key(target: &str) -> String {
    let mut name = String::new();
    push_quoted(&mut name, target);
    format!(
        "DO $drc$DECLARE n name; BEGIN \
         SELECT conname INTO n FROM pg_constraint WHERE conrelid = {name}::regclass AND contype = 'p'; \
         IF n IS NOT NULL THEN EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', {name}, n); END IF; \
         END$drc$"
    )
}
