//! The token cursor of the DDL translator: keyword tests, groups, names.

use std::cell::Cell;

use sqlparser::tokenizer::Token;

use super::super::config::PostgresSinkConfig;
use super::super::types::table_ref;

pub(super) type R<T> = Result<T, String>;

pub(super) struct Cur<'a> {
    pub(super) t: &'a [Token],
    pub(super) i: usize,
    pub(super) db: &'a str,
    pub(super) cfg: &'a PostgresSinkConfig,
    /// Set when the statement names the `drc` database.
    pub(super) bookkeeping: &'a Cell<bool>,
}

pub(super) fn is_kw(t: &Token, kw: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

pub(super) fn kw_of(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// Splits at commas outside parentheses; empty pieces are dropped.
pub(super) fn split_commas(t: &[Token]) -> Vec<&[Token]> {
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
    pub(super) fn sub(&self, t: &'a [Token]) -> Cur<'a> {
        Cur {
            t,
            i: 0,
            db: self.db,
            cfg: self.cfg,
            bookkeeping: self.bookkeeping,
        }
    }

    pub(super) fn peek(&self) -> Option<&'a Token> {
        self.t.get(self.i)
    }

    pub(super) fn done(&self) -> bool {
        self.i >= self.t.len()
    }

    pub(super) fn peek_kw(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| is_kw(t, kw))
    }

    pub(super) fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek_kw(kw) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn eat_kws(&mut self, kws: &[&str]) -> bool {
        let all = kws
            .iter()
            .enumerate()
            .all(|(k, kw)| self.t.get(self.i + k).is_some_and(|t| is_kw(t, kw)));
        if all {
            self.i += kws.len();
        }
        all
    }

    pub(super) fn eat(&mut self, tok: &Token) -> bool {
        if self.peek() == Some(tok) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn next(&mut self) -> Option<&'a Token> {
        let t = self.t.get(self.i);
        self.i += 1;
        t
    }

    pub(super) fn ident(&mut self, what: &str) -> R<String> {
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
    pub(super) fn qname(&mut self) -> R<(String, String)> {
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

    pub(super) fn note_db(&self, db: &str) {
        if db.eq_ignore_ascii_case(super::super::checkpoint::SCHEMA) {
            self.bookkeeping.set(true);
        }
    }

    /// The target `"schema"."table"` of a source name.
    pub(super) fn target(&self, q: &(String, String)) -> String {
        table_ref(self.cfg.schema_of(&q.0), &q.1)
    }

    /// The tokens of the parenthesized group at the cursor (without the
    /// parentheses); the cursor moves past it.
    pub(super) fn group(&mut self) -> R<&'a [Token]> {
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

    pub(super) fn rest_is_empty(&self, what: &str) -> R<()> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(format!("unexpected `{t}` after {what}")),
        }
    }
}
