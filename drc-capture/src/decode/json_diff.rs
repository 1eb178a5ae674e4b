//! Partial JSON updates (`PARTIAL_UPDATE_ROWS` events, written when
//! `binlog_row_value_options = PARTIAL_JSON`): parsing the per-column diff
//! vector and applying it to a JSON document.
//!
//! Wire format of one column's diffs (after the column's own length prefix):
//! a sequence, until the buffer ends, of
//! `operation (1 byte: 0 REPLACE, 1 INSERT, 2 REMOVE)`,
//! `path length (length-encoded integer)`, `path (UTF-8 text such as
//! $.a[1]."key with space")` and, unless the operation is REMOVE,
//! `value length (length-encoded integer)` + `value (binary JSON)`.
//! Length-encoded integers: below 251 one byte; `0xfc` + 2 bytes,
//! `0xfd` + 3 bytes, `0xfe` + 8 bytes, all little-endian.
//!
//! Applying follows the server's semantics for logged diffs: REPLACE
//! overwrites an existing value (an array index applied to a non-array
//! matches the value itself when it is `[0]`/`[last]`, the server's
//! auto-wrapping); INSERT adds a missing object member (placed where the
//! server's key order — shorter keys first, then bytewise — puts it) or
//! inserts into an array at the index, shifting later elements (past the end
//! appends, as `JSON_ARRAY_INSERT`); REMOVE deletes an existing member or
//! array element. Paths support `$`, `.key`, `."quoted key"` (JSON string
//! escapes), `[N]`, `[last]` and `[last-N]`; wildcards and ranges, which the
//! server never logs, are rejected.
//!
//! Guarantees: no panics on any input; parse errors name the diff and byte
//! offset; [`apply_json_diffs`] is all-or-nothing — on error the document is
//! left unchanged.

use serde_json::{Map, Value};

use super::json_binary::decode_json;

/// Operation of one logged JSON diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiffOp {
    Replace,
    Insert,
    Remove,
}

impl DiffOp {
    fn name(self) -> &'static str {
        match self {
            DiffOp::Replace => "REPLACE",
            DiffOp::Insert => "INSERT",
            DiffOp::Remove => "REMOVE",
        }
    }
}

/// One logged JSON diff: operation, MySQL JSON path text and (except for
/// REMOVE) the new value.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonDiff {
    pub op: DiffOp,
    pub path: String,
    pub value: Option<Value>,
}

/// One step of a parsed JSON path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathLeg {
    /// `.key` or `."key"`.
    Key(String),
    /// `[N]`, `[last]` (= `FromLast(0)`) or `[last-N]`.
    Index(ArrayIndex),
}

/// An array position in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArrayIndex {
    FromStart(u64),
    FromLast(u64),
}

impl ArrayIndex {
    /// Position of an existing element in an array of `len` elements.
    fn existing(self, len: usize) -> Option<usize> {
        match self {
            ArrayIndex::FromStart(i) => usize::try_from(i).ok().filter(|&i| i < len),
            ArrayIndex::FromLast(k) => {
                let k = usize::try_from(k).ok().filter(|&k| k < len)?;
                len.checked_sub(1)?.checked_sub(k)
            }
        }
    }

    /// Insertion position in an array of `len` elements (clamped to
    /// `0..=len`).
    fn insertion(self, len: usize) -> usize {
        match self {
            ArrayIndex::FromStart(i) => usize::try_from(i).map_or(len, |i| i.min(len)),
            // Past the front (or an empty array) inserts at the start.
            ArrayIndex::FromLast(_) => self.existing(len).unwrap_or(0),
        }
    }
}

/// Reads a length-encoded ("net field length") integer at `*pos` and
/// advances `*pos`.
pub fn read_net_field_length(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let first = *buf.get(*pos).ok_or_else(|| {
        format!(
            "length-encoded integer at offset {} beyond {}-byte buffer",
            *pos,
            buf.len()
        )
    })?;
    let width = match first {
        0..=250 => {
            *pos = pos.saturating_add(1);
            return Ok(u64::from(first));
        }
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        other => {
            return Err(format!(
                "invalid length-encoded integer prefix 0x{other:02x} at offset {}",
                *pos
            ))
        }
    };
    let start = pos.saturating_add(1);
    let bytes = start
        .checked_add(width)
        .and_then(|end| buf.get(start..end))
        .ok_or_else(|| {
            format!(
                "length-encoded integer at offset {} needs {} bytes, buffer has {}",
                *pos,
                width + 1,
                buf.len()
            )
        })?;
    let v = bytes
        .iter()
        .rev()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    *pos = start.saturating_add(width);
    Ok(v)
}

fn take<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    len: u64,
    what: &str,
    index: usize,
) -> Result<&'a [u8], String> {
    let at = *pos;
    let s = usize::try_from(len)
        .ok()
        .and_then(|l| at.checked_add(l))
        .and_then(|end| buf.get(at..end))
        .ok_or_else(|| {
            format!(
                "JSON diff #{index}: {what} of {len} bytes at offset {at} beyond {}-byte buffer",
                buf.len()
            )
        })?;
    *pos = at.saturating_add(s.len());
    Ok(s)
}

/// Parses the diff vector of one JSON column.
pub fn parse_json_diffs(buf: &[u8]) -> Result<Vec<JsonDiff>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        let index = out.len();
        let op_at = pos;
        let op = match buf.get(pos).copied() {
            Some(0) => DiffOp::Replace,
            Some(1) => DiffOp::Insert,
            Some(2) => DiffOp::Remove,
            Some(other) => {
                return Err(format!(
                    "JSON diff #{index}: unknown operation {other} at offset {op_at}"
                ))
            }
            None => break,
        };
        pos += 1;
        let path_len = read_net_field_length(buf, &mut pos)
            .map_err(|e| format!("JSON diff #{index}: path length: {e}"))?;
        let path_bytes = take(buf, &mut pos, path_len, "path", index)?;
        let path = std::str::from_utf8(path_bytes)
            .map_err(|e| format!("JSON diff #{index}: path is not valid UTF-8: {e}"))?
            .to_owned();
        let value = if op == DiffOp::Remove {
            None
        } else {
            let value_len = read_net_field_length(buf, &mut pos)
                .map_err(|e| format!("JSON diff #{index}: value length: {e}"))?;
            let value_bytes = take(buf, &mut pos, value_len, "value", index)?;
            Some(
                decode_json(value_bytes)
                    .map_err(|e| format!("JSON diff #{index} ({path}): {e}"))?,
            )
        };
        out.push(JsonDiff { op, path, value });
    }
    Ok(out)
}

fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

/// Parses a MySQL JSON path (`$` followed by member and array-cell legs).
pub fn parse_json_path(path: &str) -> Result<Vec<PathLeg>, String> {
    let err = |at: usize, msg: &str| format!("JSON path {path:?}: {msg} at offset {at}");
    let bytes = path.as_bytes();
    let skip_ws = |mut i: usize| {
        while bytes.get(i).is_some_and(|&b| is_ws(char::from(b))) {
            i += 1;
        }
        i
    };
    let mut i = skip_ws(0);
    if bytes.get(i) != Some(&b'$') {
        return Err(err(i, "expected '$'"));
    }
    i += 1;
    let mut legs = Vec::new();
    loop {
        i = skip_ws(i);
        match bytes.get(i) {
            None => break,
            Some(b'.') => {
                i = skip_ws(i + 1);
                match bytes.get(i) {
                    Some(b'"') => {
                        let start = i;
                        let mut j = i + 1;
                        loop {
                            match bytes.get(j) {
                                None => return Err(err(start, "unterminated quoted key")),
                                Some(b'\\') => j += 2,
                                Some(b'"') => break,
                                Some(_) => j += 1,
                            }
                        }
                        let quoted = path
                            .get(start..=j)
                            .ok_or_else(|| err(start, "bad quoted key"))?;
                        let key: String = serde_json::from_str(quoted)
                            .map_err(|e| err(start, &format!("bad quoted key ({e})")))?;
                        legs.push(PathLeg::Key(key));
                        i = j + 1;
                    }
                    Some(b'*') => return Err(err(i, "wildcards are not supported")),
                    Some(_) => {
                        let start = i;
                        let rest = path.get(start..).unwrap_or("");
                        let len = rest
                            .find(|c: char| {
                                matches!(c, '.' | '[' | ']' | '"' | '*' | '$') || is_ws(c)
                            })
                            .unwrap_or(rest.len());
                        if len == 0 {
                            return Err(err(start, "empty member name"));
                        }
                        legs.push(PathLeg::Key(rest.get(..len).unwrap_or("").to_owned()));
                        i = start + len;
                    }
                    None => return Err(err(i, "member name expected")),
                }
            }
            Some(b'[') => {
                let open = i;
                i = skip_ws(i + 1);
                let rest = path.get(i..).unwrap_or("");
                let idx = if rest.starts_with('*') {
                    return Err(err(i, "wildcards are not supported"));
                } else if rest.starts_with("last") {
                    i = skip_ws(i + 4);
                    if bytes.get(i) == Some(&b'-') {
                        i = skip_ws(i + 1);
                        let (n, used) = parse_uint(path, i).map_err(|m| err(i, &m))?;
                        i += used;
                        ArrayIndex::FromLast(n)
                    } else {
                        ArrayIndex::FromLast(0)
                    }
                } else {
                    let (n, used) = parse_uint(path, i).map_err(|m| err(i, &m))?;
                    i += used;
                    ArrayIndex::FromStart(n)
                };
                i = skip_ws(i);
                if path.get(i..).is_some_and(|r| r.starts_with("to")) {
                    return Err(err(i, "array ranges are not supported"));
                }
                if bytes.get(i) != Some(&b']') {
                    return Err(err(open, "unterminated or malformed array index"));
                }
                i += 1;
                legs.push(PathLeg::Index(idx));
            }
            Some(b'*') => return Err(err(i, "wildcards are not supported")),
            Some(_) => return Err(err(i, "expected '.' or '['")),
        }
    }
    Ok(legs)
}

/// Parses decimal digits at `at`; returns (value, bytes used).
fn parse_uint(s: &str, at: usize) -> Result<(u64, usize), String> {
    let rest = s.get(at..).unwrap_or("");
    let len = rest.bytes().take_while(u8::is_ascii_digit).count();
    if len == 0 {
        return Err("array index expected".to_string());
    }
    let n = rest
        .get(..len)
        .unwrap_or("")
        .parse::<u64>()
        .map_err(|_| "array index too large".to_string())?;
    Ok((n, len))
}

/// One navigation step, with the server's auto-wrapping of non-arrays for
/// `[0]` / `[last]`.
fn step_mut<'a>(v: &'a mut Value, leg: &PathLeg) -> Option<&'a mut Value> {
    match (leg, v) {
        (PathLeg::Key(k), Value::Object(m)) => m.get_mut(k),
        (PathLeg::Index(i), Value::Array(a)) => {
            let p = i.existing(a.len())?;
            a.get_mut(p)
        }
        (PathLeg::Index(i), other) if i.existing(1) == Some(0) => Some(other),
        _ => None,
    }
}

fn seek_mut<'a>(mut v: &'a mut Value, legs: &[PathLeg]) -> Option<&'a mut Value> {
    for leg in legs {
        v = step_mut(v, leg)?;
    }
    Some(v)
}

/// The server's object key order: shorter keys first, then bytewise.
fn key_less(a: &str, b: &str) -> bool {
    (a.len(), a.as_bytes()) < (b.len(), b.as_bytes())
}

fn insert_member(m: &mut Map<String, Value>, key: String, value: Value) {
    let pos = m
        .keys()
        .position(|existing| key_less(&key, existing))
        .unwrap_or(m.len())
        .min(m.len());
    m.shift_insert(pos, key, value);
}

fn apply_one(doc: &mut Value, diff: &JsonDiff, n: usize) -> Result<(), String> {
    let ctx = || format!("JSON diff #{n} {} {}", diff.op.name(), diff.path);
    let legs = parse_json_path(&diff.path).map_err(|e| format!("{}: {e}", ctx()))?;
    let value = || {
        diff.value
            .clone()
            .ok_or_else(|| format!("{}: diff carries no value", ctx()))
    };
    if diff.op == DiffOp::Replace {
        let target = seek_mut(doc, &legs).ok_or_else(|| format!("{}: path not found", ctx()))?;
        *target = value()?;
        return Ok(());
    }
    let (last, parent_legs) = legs
        .split_last()
        .ok_or_else(|| format!("{}: cannot apply to the document root", ctx()))?;
    let parent =
        seek_mut(doc, parent_legs).ok_or_else(|| format!("{}: parent path not found", ctx()))?;
    match (diff.op, last, parent) {
        (DiffOp::Insert, PathLeg::Key(k), Value::Object(m)) => {
            if m.contains_key(k) {
                return Err(format!("{}: member already exists", ctx()));
            }
            insert_member(m, k.clone(), value()?);
        }
        (DiffOp::Insert, PathLeg::Index(i), Value::Array(a)) => {
            let p = i.insertion(a.len()).min(a.len());
            a.insert(p, value()?);
        }
        (DiffOp::Remove, PathLeg::Key(k), Value::Object(m)) => {
            if m.shift_remove(k.as_str()).is_none() {
                return Err(format!("{}: member not found", ctx()));
            }
        }
        (DiffOp::Remove, PathLeg::Index(i), Value::Array(a)) => {
            let p = i.existing(a.len()).ok_or_else(|| {
                format!("{}: array index out of range (length {})", ctx(), a.len())
            })?;
            if p < a.len() {
                a.remove(p);
            }
        }
        (_, _, parent) => {
            return Err(format!(
                "{}: path leg does not match the parent's type ({})",
                ctx(),
                type_name(parent)
            ))
        }
    }
    Ok(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Applies `diffs` in order to `doc`. All-or-nothing: on error `doc` is
/// unchanged and the error names the failing diff.
pub fn apply_json_diffs(doc: &mut Value, diffs: &[JsonDiff]) -> Result<(), String> {
    if diffs.is_empty() {
        return Ok(());
    }
    let mut work = doc.clone();
    for (n, diff) in diffs.iter().enumerate() {
        apply_one(&mut work, diff, n)?;
    }
    *doc = work;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn net_len(n: usize, out: &mut Vec<u8>) {
        if n < 251 {
            out.push(n as u8);
        } else if n < 1 << 16 {
            out.push(0xfc);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        } else if n < 1 << 24 {
            out.push(0xfd);
            out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        } else {
            out.push(0xfe);
            out.extend_from_slice(&(n as u64).to_le_bytes());
        }
    }

    /// Minimal binary JSON for scalars used in tests.
    fn bin(v: &Value) -> Vec<u8> {
        match v {
            Value::Null => vec![0x04, 0x00],
            Value::Bool(true) => vec![0x04, 0x01],
            Value::Bool(false) => vec![0x04, 0x02],
            Value::Number(n) => {
                let mut d = vec![0x09];
                d.extend_from_slice(&n.as_i64().unwrap().to_le_bytes());
                d
            }
            Value::String(s) => {
                assert!(s.len() < 128);
                let mut d = vec![0x0c, s.len() as u8];
                d.extend_from_slice(s.as_bytes());
                d
            }
            _ => panic!("scalars only"),
        }
    }

    fn enc_diff(op: u8, path: &str, value: Option<&Value>, out: &mut Vec<u8>) {
        out.push(op);
        net_len(path.len(), out);
        out.extend_from_slice(path.as_bytes());
        if let Some(v) = value {
            let b = bin(v);
            net_len(b.len(), out);
            out.extend_from_slice(&b);
        }
    }

    fn d(op: DiffOp, path: &str, value: Option<Value>) -> JsonDiff {
        JsonDiff {
            op,
            path: path.to_string(),
            value,
        }
    }

    #[test]
    fn net_field_length_forms() {
        let mut p = 0;
        assert_eq!(read_net_field_length(&[250], &mut p).unwrap(), 250);
        assert_eq!(p, 1);
        let mut p = 0;
        assert_eq!(
            read_net_field_length(&[0xfc, 0x34, 0x12], &mut p).unwrap(),
            0x1234
        );
        assert_eq!(p, 3);
        let mut p = 0;
        assert_eq!(
            read_net_field_length(&[0xfd, 1, 2, 3], &mut p).unwrap(),
            0x030201
        );
        assert_eq!(p, 4);
        let mut p = 0;
        assert_eq!(
            read_net_field_length(&[0xfe, 1, 0, 0, 0, 0, 0, 0, 1], &mut p).unwrap(),
            (1 << 56) + 1
        );
        assert_eq!(p, 9);
        for bad in [&[0xfb][..], &[0xff], &[0xfc, 1], &[0xfe, 1, 2], &[]] {
            let mut p = 0;
            assert!(read_net_field_length(bad, &mut p).is_err());
        }
    }

    #[test]
    fn parse_diff_vector() {
        let mut buf = Vec::new();
        enc_diff(0, "$.a", Some(&json!(5)), &mut buf);
        enc_diff(1, "$.b[1]", Some(&json!("x")), &mut buf);
        enc_diff(2, "$.\"key with space\"", None, &mut buf);
        let long_path = format!("$.{}", "k".repeat(300));
        enc_diff(1, &long_path, Some(&json!(null)), &mut buf);
        let diffs = parse_json_diffs(&buf).unwrap();
        assert_eq!(
            diffs,
            vec![
                d(DiffOp::Replace, "$.a", Some(json!(5))),
                d(DiffOp::Insert, "$.b[1]", Some(json!("x"))),
                d(DiffOp::Remove, "$.\"key with space\"", None),
                d(DiffOp::Insert, &long_path, Some(json!(null))),
            ]
        );
        assert_eq!(parse_json_diffs(&[]).unwrap(), vec![]);
    }

    #[test]
    fn parse_diff_errors() {
        let mut buf = Vec::new();
        enc_diff(0, "$.a", Some(&json!(5)), &mut buf);
        // every truncation of a single diff fails
        for cut in 1..buf.len() {
            assert!(parse_json_diffs(&buf[..cut]).is_err(), "cut {cut}");
        }
        assert!(parse_json_diffs(&[3, 1, b'$'])
            .unwrap_err()
            .contains("unknown operation"));
        assert!(parse_json_diffs(&[2, 2, 0xff, 0xfe])
            .unwrap_err()
            .contains("UTF-8"));
        // bad binary JSON value
        assert!(parse_json_diffs(&[0, 1, b'$', 2, 0x04, 0x09]).is_err());
        // second diff truncated: error names it
        let mut two = buf.clone();
        two.extend_from_slice(&[2, 5, b'$']);
        assert!(parse_json_diffs(&two).unwrap_err().contains("#1"));
    }

    #[test]
    fn path_forms() {
        use ArrayIndex::*;
        use PathLeg::*;
        assert_eq!(parse_json_path("$").unwrap(), vec![]);
        assert!(parse_json_path("$.a[1].\"key with space\"[last][last-2].b_c$").is_err());
        assert_eq!(
            parse_json_path("$.a[1].\"key with space\"[last][last-2].b_c").unwrap(),
            vec![
                Key("a".into()),
                Index(FromStart(1)),
                Key("key with space".into()),
                Index(FromLast(0)),
                Index(FromLast(2)),
                Key("b_c".into()),
            ]
        );
        assert_eq!(
            parse_json_path(r#"$."a\"b\\c\u00e9\n""#).unwrap(),
            vec![Key("a\"b\\c\u{e9}\n".into())]
        );
        assert_eq!(
            parse_json_path(" $ . a [ 3 ] [ last - 1 ]").unwrap(),
            vec![Key("a".into()), Index(FromStart(3)), Index(FromLast(1))]
        );
        assert_eq!(parse_json_path("$.été").unwrap(), vec![Key("été".into())]);
    }

    #[test]
    fn path_errors() {
        for bad in [
            "",
            "a",
            "$.",
            "$[",
            "$[1",
            "$[x]",
            "$[-1]",
            "$.*",
            "$[*]",
            "$**.a",
            "$[1 to 3]",
            "$.\"unterminated",
            "$.\"bad\\q\"",
            "$a",
            "$[99999999999999999999999]",
            "$.a]",
        ] {
            assert!(parse_json_path(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn replace() {
        let mut doc = json!({"a": 1, "b": [1, 2, {"c": 3}]});
        apply_json_diffs(&mut doc, &[d(DiffOp::Replace, "$.a", Some(json!("x")))]).unwrap();
        apply_json_diffs(&mut doc, &[d(DiffOp::Replace, "$.b[2].c", Some(json!([])))]).unwrap();
        apply_json_diffs(
            &mut doc,
            &[d(DiffOp::Replace, "$.b[last-2]", Some(json!(0)))],
        )
        .unwrap();
        assert_eq!(doc, json!({"a": "x", "b": [0, 2, {"c": []}]}));
        // auto-wrap: $.a[0] on a scalar is the scalar itself
        apply_json_diffs(&mut doc, &[d(DiffOp::Replace, "$.a[0]", Some(json!(7)))]).unwrap();
        assert_eq!(doc["a"], json!(7));
        // root replace
        apply_json_diffs(&mut doc, &[d(DiffOp::Replace, "$", Some(json!(1)))]).unwrap();
        assert_eq!(doc, json!(1));
    }

    #[test]
    fn replace_missing_fails_and_leaves_doc() {
        let orig = json!({"a": 1, "b": [1]});
        let mut doc = orig.clone();
        let diffs = [
            d(DiffOp::Replace, "$.a", Some(json!(2))),
            d(DiffOp::Replace, "$.zz", Some(json!(2))),
        ];
        let e = apply_json_diffs(&mut doc, &diffs).unwrap_err();
        assert!(e.contains("#1") && e.contains("not found"), "{e}");
        assert_eq!(doc, orig);
        assert!(
            apply_json_diffs(&mut doc, &[d(DiffOp::Replace, "$.b[5]", Some(json!(0)))]).is_err()
        );
        assert!(
            apply_json_diffs(&mut doc, &[d(DiffOp::Replace, "$.a[1]", Some(json!(0)))]).is_err()
        );
        assert!(apply_json_diffs(&mut doc, &[d(DiffOp::Replace, "$.a", None)]).is_err());
        assert!(
            apply_json_diffs(&mut doc, &[d(DiffOp::Replace, "$.a[*]", Some(json!(0)))]).is_err()
        );
        assert_eq!(doc, orig);
    }

    #[test]
    fn insert() {
        let mut doc = json!({"bb": 1, "ccc": [1, 2, 3]});
        apply_json_diffs(
            &mut doc,
            &[
                d(DiffOp::Insert, "$.a", Some(json!(0))),
                d(DiffOp::Insert, "$.zz", Some(json!(true))),
                d(DiffOp::Insert, "$.ccc[1]", Some(json!("x"))),
                d(DiffOp::Insert, "$.ccc[99]", Some(json!("end"))),
                d(DiffOp::Insert, "$.ccc[0]", Some(json!("start"))),
                d(DiffOp::Insert, "$.ccc[last]", Some(json!("before-last"))),
            ],
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&doc).unwrap(),
            r#"{"a":0,"bb":1,"zz":true,"ccc":["start",1,"x",2,3,"before-last","end"]}"#
        );
        let mut empty = json!([]);
        apply_json_diffs(&mut empty, &[d(DiffOp::Insert, "$[last]", Some(json!(1)))]).unwrap();
        apply_json_diffs(
            &mut empty,
            &[d(DiffOp::Insert, "$[last-5]", Some(json!(0)))],
        )
        .unwrap();
        assert_eq!(empty, json!([0, 1]));
    }

    #[test]
    fn insert_errors() {
        let orig = json!({"a": 1, "arr": [1]});
        let mut doc = orig.clone();
        for diff in [
            d(DiffOp::Insert, "$.a", Some(json!(2))),      // exists
            d(DiffOp::Insert, "$.x.y", Some(json!(2))),    // parent missing
            d(DiffOp::Insert, "$.arr.k", Some(json!(2))),  // key on array
            d(DiffOp::Insert, "$.a[1]", Some(json!(2))),   // index on scalar
            d(DiffOp::Insert, "$", Some(json!(2))),        // root
            d(DiffOp::Insert, "$.b", None),                // no value
            d(DiffOp::Insert, "$.\"open", Some(json!(2))), // bad syntax
        ] {
            assert!(
                apply_json_diffs(&mut doc, std::slice::from_ref(&diff)).is_err(),
                "{diff:?}"
            );
        }
        assert_eq!(doc, orig);
    }

    #[test]
    fn remove() {
        let mut doc = json!({"a": 1, "b": 2, "c": [1, 2, 3, 4], "key with space": 0});
        apply_json_diffs(
            &mut doc,
            &[
                d(DiffOp::Remove, "$.a", None),
                d(DiffOp::Remove, "$.c[1]", None),
                d(DiffOp::Remove, "$.c[last]", None),
                d(DiffOp::Remove, "$.\"key with space\"", None),
            ],
        )
        .unwrap();
        assert_eq!(serde_json::to_string(&doc).unwrap(), r#"{"b":2,"c":[1,3]}"#);
        let orig = doc.clone();
        for path in [
            "$.zz",
            "$.c[5]",
            "$.c[last-9]",
            "$.b[0]",
            "$",
            "$.c.x",
            "$.q.r",
        ] {
            assert!(
                apply_json_diffs(&mut doc, &[d(DiffOp::Remove, path, None)]).is_err(),
                "{path}"
            );
        }
        assert_eq!(doc, orig);
    }

    #[test]
    fn parse_then_apply() {
        let mut buf = Vec::new();
        enc_diff(0, "$.n", Some(&json!(42)), &mut buf);
        enc_diff(1, "$.l[0]", Some(&json!("first")), &mut buf);
        enc_diff(2, "$.gone", None, &mut buf);
        let diffs = parse_json_diffs(&buf).unwrap();
        let mut doc = json!({"n": 1, "l": [2], "gone": null});
        apply_json_diffs(&mut doc, &diffs).unwrap();
        assert_eq!(doc, json!({"n": 42, "l": ["first", 2]}));
    }

    #[test]
    fn recorded_mysql_8_partial_update() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/binlogs");
        let file = match std::fs::read(format!("{dir}/mysql-common__json.binlog.000001")) {
            Ok(f) => f,
            Err(e) => {
                eprintln!(
                    "SKIPPED: binlog fixture mysql-common__json.binlog.000001 not available ({e})"
                );
                return;
            }
        };
        // Partial JSON columns are stored as a 4-byte length + diff vector;
        // find every such slice that parses as diffs with real paths.
        let mut found = Vec::new();
        for i in 0..file.len().saturating_sub(4) {
            let len = u32::from_le_bytes(file[i..i + 4].try_into().unwrap()) as usize;
            let Some(buf) = file.get(i + 4..i + 4 + len) else {
                continue;
            };
            if len < 3 || buf[0] > 2 {
                continue;
            }
            if let Ok(diffs) = parse_json_diffs(buf) {
                if !diffs.is_empty() && diffs.iter().all(|d| parse_json_path(&d.path).is_ok()) {
                    found.push(diffs);
                }
            }
        }
        for age in [26, 34, 42] {
            let want = vec![d(DiffOp::Replace, "$.age", Some(json!(age)))];
            assert!(found.contains(&want), "{want:?} not among {found:?}");
        }
        let mut doc = json!({"age": 25, "data": "xxxxxxxxxx", "name": "Joe"});
        apply_json_diffs(&mut doc, &[d(DiffOp::Replace, "$.age", Some(json!(26)))]).unwrap();
        assert_eq!(doc, json!({"age": 26, "data": "xxxxxxxxxx", "name": "Joe"}));
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                "[a-c]".prop_map(|k| format!(".{k}")),
                (0u8..4).prop_map(|i| format!("[{i}]")),
                (0u8..3).prop_map(|i| if i == 0 {
                    "[last]".to_string()
                } else {
                    format!("[last-{i}]")
                }),
            ],
            0..4,
        )
        .prop_map(|legs| format!("${}", legs.concat()))
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = parse_json_diffs(&buf);
        }

        #[test]
        fn arbitrary_paths_never_panic(s in "\\PC{0,24}", t in "[$.\\[\\]\"\\\\a-z0-9 *-]{0,16}") {
            let _ = parse_json_path(&s);
            let _ = parse_json_path(&t);
        }

        #[test]
        fn random_ops_never_panic(
            ops in proptest::collection::vec((0u8..3, path_strategy(), any::<i32>()), 0..8),
        ) {
            let mut doc = json!({"a": [1, {"b": 2}], "b": {"c": [[]]}, "c": 3});
            for (op, path, v) in ops {
                let op = match op { 0 => DiffOp::Replace, 1 => DiffOp::Insert, _ => DiffOp::Remove };
                let value = if op == DiffOp::Remove { None } else { Some(json!(v)) };
                let before = doc.clone();
                if apply_json_diffs(&mut doc, &[JsonDiff { op, path, value }]).is_err() {
                    prop_assert_eq!(&doc, &before);
                }
            }
        }
    }
}
