//! Subject templates, token escaping and subject matching.
//!
//! A template is a NATS subject whose tokens may hold the placeholders
//! `{stream}`, `{db}` and `{table}`. **Each placeholder renders as exactly one
//! subject token**, whatever the name holds, so subjects never collide and a
//! wildcard means what it says (`drc.*.shop.*` is every table of database
//! `shop` in every stream):
//!
//! - the bytes `A-Z a-z 0-9 _ -` are kept as they are;
//! - every other byte, `.` included, becomes `%XX` (two uppercase hex
//!   digits): DRC stream `a.shop` renders as `a%2Eshop`, table `my table`
//!   as `my%20table`, `%` itself as `%25`; non-ASCII names are escaped per
//!   UTF-8 byte;
//! - an empty name (only a DDL without a default database has one) renders
//!   as `_`.
//!
//! Decoding is plain percent-decoding of each token. JetStream stream names
//! may not hold `.` either; [`stream_name`] maps the characters a stream
//! name may not hold to `_` instead (readable; a clash between two DRC
//! streams is caught by the sink's single-writer check).

use crate::error::{ApplyError, Result};

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 3] = ["{stream}", "{db}", "{table}"];

/// Escapes `name` into one subject token (see the module docs).
pub fn escape_token(name: &str) -> String {
    if name.is_empty() {
        return "_".into();
    }
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Reverses [`escape_token`] (`_` alone decodes to itself: it is also the
/// name `_`).
pub fn unescape_token(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = token.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A JetStream stream name from a template holding `{stream}`: characters
/// other than `A-Z a-z 0-9 _ -` in the DRC stream name become `_`.
pub fn stream_name(template: &str, stream: &str) -> String {
    let safe: String = stream
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    template.replace("{stream}", &safe)
}

/// A parsed subject template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    tokens: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Stream,
    Db,
    Table,
}

impl Template {
    /// Parses `text`; `key` names the config key in errors. `allowed` are
    /// the placeholders this template may use.
    pub fn parse(key: &str, text: &str, allowed: &[&str]) -> Result<Self> {
        if text.is_empty() {
            return Err(ApplyError::Config(format!(
                "{key} is empty; write a subject such as \"drc.{{stream}}.{{db}}.{{table}}\""
            )));
        }
        let mut tokens = Vec::new();
        for tok in text.split('.') {
            let part = match tok {
                "{stream}" => Part::Stream,
                "{db}" => Part::Db,
                "{table}" => Part::Table,
                "" => {
                    return Err(ApplyError::Config(format!(
                        "{key} = {text:?} has an empty token (two dots in a row, or a dot at an end)"
                    )))
                }
                lit if lit.contains(['{', '}']) => {
                    return Err(ApplyError::Config(format!(
                        "{key} = {text:?}: token {lit:?} is not a placeholder; a placeholder is a whole token, one of {}",
                        allowed.join(", ")
                    )))
                }
                lit if lit.contains(['*', '>']) || lit.chars().any(char::is_whitespace) => {
                    return Err(ApplyError::Config(format!(
                        "{key} = {text:?}: token {lit:?} holds a wildcard or white space; a publish subject is literal"
                    )))
                }
                lit => Part::Literal(lit.to_owned()),
            };
            if !matches!(part, Part::Literal(_)) && !allowed.contains(&tok) {
                return Err(ApplyError::Config(format!(
                    "{key} = {text:?}: {tok} cannot be used here; use {}",
                    allowed.join(", ")
                )));
            }
            tokens.push(part);
        }
        Ok(Self { tokens })
    }

    /// The subject for one table of one stream.
    pub fn render(&self, stream: &str, db: &str, table: &str) -> String {
        let mut out = String::new();
        for (i, t) in self.tokens.iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            match t {
                Part::Literal(l) => out.push_str(l),
                Part::Stream => out.push_str(&escape_token(stream)),
                Part::Db => out.push_str(&escape_token(db)),
                Part::Table => out.push_str(&escape_token(table)),
            }
        }
        out
    }
}

/// Whether a literal `subject` matches the JetStream filter `pattern`
/// (`*` one token, `>` one or more trailing tokens).
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut subj = subject.split('.');
    for p in pattern.split('.') {
        match p {
            ">" => return subj.next().is_some(),
            "*" => {
                if subj.next().is_none() {
                    return false;
                }
            }
            lit => {
                if subj.next() != Some(lit) {
                    return false;
                }
            }
        }
    }
    subj.next().is_none()
}

/// Validates a JetStream subject filter from the config.
pub fn check_filter(key: &str, filter: &str) -> Result<()> {
    let tokens: Vec<&str> = filter.split('.').collect();
    let bad = filter.is_empty()
        || filter.chars().any(char::is_whitespace)
        || tokens.iter().any(|t| t.is_empty())
        || tokens.iter().enumerate().any(|(i, t)| {
            (*t == ">" && i + 1 != tokens.len()) || (t.len() > 1 && t.contains(['*', '>']))
        });
    if bad {
        return Err(ApplyError::Config(format!(
            "{key}: {filter:?} is not a NATS subject filter (dot-separated tokens, `*` for one token, `>` last)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_stay_one_token() {
        for name in [
            "a.shop", "orders", "my table", "100%", "日本", "a*b>c", "_", "x-y_z",
        ] {
            let t = escape_token(name);
            assert!(!t.contains(['.', '*', '>', ' ']), "{name} -> {t}");
            assert_eq!(unescape_token(&t).as_deref(), Some(name));
        }
        assert_eq!(escape_token("a.shop"), "a%2Eshop");
        assert_eq!(escape_token(""), "_");
    }

    #[test]
    fn templates_render_and_refuse_bad_input() {
        let t = Template::parse("subject", "drc.{stream}.{db}.{table}", &PLACEHOLDERS)
            .expect("template");
        assert_eq!(
            t.render("a.shop", "shop", "order items"),
            "drc.a%2Eshop.shop.order%20items"
        );
        assert!(Template::parse("subject", "drc..x", &PLACEHOLDERS).is_err());
        assert!(Template::parse("subject", "drc.{nope}", &PLACEHOLDERS).is_err());
        assert!(Template::parse("subject", "drc.x{db}", &PLACEHOLDERS).is_err());
        assert!(Template::parse("subject", "drc.*", &PLACEHOLDERS).is_err());
        assert!(Template::parse("ddl_subject", "drc.{table}", &["{stream}", "{db}"]).is_err());
    }

    #[test]
    fn subject_matching() {
        assert!(matches("drc.>", "drc.a.b"));
        assert!(!matches("drc.>", "drc"));
        assert!(matches("drc.*.x", "drc.a.x"));
        assert!(!matches("drc.*.x", "drc.a.b.x"));
        assert!(matches("drc.a", "drc.a"));
        assert!(!matches("drc.a", "drc.a.b"));
        assert!(check_filter("k", "drc.>").is_ok());
        assert!(check_filter("k", "drc.>.x").is_err());
        assert!(check_filter("k", "drc..x").is_err());
    }

    #[test]
    fn stream_names() {
        assert_eq!(stream_name("DRC_{stream}", "a.shop"), "DRC_a_shop");
    }
}
