//! The JSON-lines format: one JSON object per transaction.
//!
//! ```text
//! {"gtid":"0-1-7","file":"binlog.000001","pos":1234,"ts":"2026-11-27T10:00:00Z","server_id":1,
//!  "changes":[{"op":"insert","db":"shop","table":"orders","pk":["id"],"before":null,"after":{"id":1}}]}
//! {"gtid":"0-1-8","file":"binlog.000001","pos":1400,"ts":"...","ddl":"ALTER TABLE ...","db":"shop"}
//! ```
//!
//! Values: integers as JSON numbers (full i64/u64), DECIMAL as a string of
//! its exact digits, FLOAT/DOUBLE as numbers, text as strings, bytes as
//! `{"base64": ...}`, DATE `"YYYY-MM-DD"`, TIME `"[-]H:MM:SS[.ffffff]"`,
//! DATETIME/TIMESTAMP `"YYYY-MM-DD HH:MM:SS[.ffffff]"` (TIMESTAMP in UTC),
//! fractional digits as the column's precision, YEAR and BIT as numbers, ENUM
//! a string, SET an array of strings, JSON the value itself, geometry
//! `{"wkb_base64": ..., "srid": N}`, INET6/UUID their text, NULL `null`.
//!
//! The writer formats straight into a byte buffer (no intermediate JSON tree)
//! and streams spilled transactions change by change.

use std::io::Write;

use base64::Engine;
use drc_proto::v1 as pb;
use pb::value::Kind;

use crate::assemble::AssembledTxn;
use crate::decode::temporal;
use crate::error::{CaptureError, Result};

fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match esc {
            Some(e) => out.extend_from_slice(e),
            None => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// RFC 3339 UTC time of a commit timestamp in microseconds.
pub fn rfc3339(us: i64) -> String {
    let dt = temporal::unix_to_datetime(us.div_euclid(1_000_000), 0);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second
    )
}

/// Shortest text that reads back as the same float, with an exponent for
/// large and small magnitudes (`1.7976931348623157e308`). Non-finite values
/// (which MySQL never stores) become strings.
fn float(out: &mut Vec<u8>, finite: bool, text: &str) {
    if finite {
        out.extend_from_slice(text.as_bytes());
    } else {
        json_str(out, text);
    }
}

/// Writes one value in the documented JSON form.
pub fn write_value(out: &mut Vec<u8>, v: &pb::Value) {
    let b64 = base64::engine::general_purpose::STANDARD;
    match &v.kind {
        None | Some(Kind::Null(_)) => out.extend_from_slice(b"null"),
        Some(Kind::Int(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(Kind::Uint(u)) => {
            let _ = write!(out, "{u}");
        }
        Some(Kind::Decimal(d)) => json_str(out, d),
        Some(Kind::Float(f)) => float(out, f.is_finite(), ryu::Buffer::new().format(*f)),
        Some(Kind::Double(d)) => float(out, d.is_finite(), ryu::Buffer::new().format(*d)),
        Some(Kind::Bytes(b)) => {
            out.extend_from_slice(b"{\"base64\":\"");
            out.extend_from_slice(b64.encode(b).as_bytes());
            out.extend_from_slice(b"\"}");
        }
        Some(Kind::Text(s)) => json_str(out, s),
        Some(Kind::Date(d)) => {
            let _ = write!(out, "\"{:04}-{:02}-{:02}\"", d.year, d.month, d.day);
        }
        Some(Kind::Time(t)) => {
            let tt = temporal::Time {
                negative: t.negative,
                hours: t.hours,
                minutes: t.minutes as u8,
                seconds: t.seconds as u8,
                micros: t.micros,
            };
            json_str(out, &temporal::format_time(&tt, t.fsp as u8));
        }
        Some(Kind::Datetime(d)) => {
            let dt = temporal::DateTime {
                year: d.year as u16,
                month: d.month as u8,
                day: d.day as u8,
                hour: d.hour as u8,
                minute: d.minute as u8,
                second: d.second as u8,
                micros: d.micros,
            };
            json_str(out, &temporal::format_datetime(&dt, d.fsp as u8));
        }
        Some(Kind::Timestamp(t)) => {
            let text = if t.seconds == 0 && t.micros == 0 {
                let zero = temporal::DateTime::default();
                temporal::format_datetime(&zero, t.fsp as u8)
            } else {
                let dt = temporal::unix_to_datetime(t.seconds, t.micros);
                temporal::format_datetime(&dt, t.fsp as u8)
            };
            json_str(out, &text);
        }
        Some(Kind::Year(y)) => {
            let _ = write!(out, "{y}");
        }
        Some(Kind::Bit(b)) => {
            let _ = write!(out, "{}", b.value);
        }
        Some(Kind::EnumLabel(l)) => json_str(out, l),
        Some(Kind::SetLabels(s)) => {
            out.push(b'[');
            for (i, l) in s.labels.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_str(out, l);
            }
            out.push(b']');
        }
        Some(Kind::Json(j)) => {
            if j.is_empty() {
                out.extend_from_slice(b"null");
            } else {
                out.extend_from_slice(j.as_bytes());
            }
        }
        Some(Kind::Geometry(g)) => {
            out.extend_from_slice(b"{\"wkb_base64\":\"");
            out.extend_from_slice(b64.encode(&g.wkb).as_bytes());
            let _ = write!(out, "\",\"srid\":{}}}", g.srid);
        }
        Some(Kind::Inet6(s)) | Some(Kind::Uuid(s)) => json_str(out, s),
        Some(Kind::Vector(vec)) => {
            out.push(b'[');
            for (i, f) in vec.values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                float(out, f.is_finite(), ryu::Buffer::new().format(*f));
            }
            out.push(b']');
        }
    }
}

fn write_row(out: &mut Vec<u8>, columns: &[pb::Column], row: Option<&pb::Row>) {
    let Some(row) = row else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'{');
    let mut first = true;
    for (c, v) in columns.iter().zip(&row.values) {
        if v.kind.is_none() {
            // Not in the row image (MINIMAL/NOBLOB images in binlog files).
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        json_str(out, &c.name);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

/// Writes one change object.
pub fn write_change(out: &mut Vec<u8>, c: &pb::RowChange) {
    let op = match pb::Op::try_from(c.op) {
        Ok(pb::Op::Insert) => "insert",
        Ok(pb::Op::Update) => "update",
        Ok(pb::Op::Delete) => "delete",
        _ => "unknown",
    };
    let _ = write!(out, "{{\"op\":\"{op}\",\"db\":");
    json_str(out, &c.schema);
    out.extend_from_slice(b",\"table\":");
    json_str(out, &c.table);
    out.extend_from_slice(b",\"pk\":[");
    for (i, &k) in c.primary_key.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(
            out,
            c.columns
                .get(k as usize)
                .map_or("", |col| col.name.as_str()),
        );
    }
    out.extend_from_slice(b"],\"before\":");
    write_row(out, &c.columns, c.before.as_ref());
    out.extend_from_slice(b",\"after\":");
    write_row(out, &c.columns, c.after.as_ref());
    out.push(b'}');
}

fn write_head(out: &mut Vec<u8>, t: &pb::Transaction) {
    let p = t.position.clone().unwrap_or_default();
    out.extend_from_slice(b"{\"gtid\":");
    json_str(out, &p.gtid);
    out.extend_from_slice(b",\"file\":");
    json_str(out, &p.file);
    let _ = write!(
        out,
        ",\"pos\":{},\"ts\":\"{}\",\"server_id\":{}",
        p.pos,
        rfc3339(t.commit_ts_us),
        t.server_id
    );
}

/// Writes one whole transaction as one line to `w`, streaming spilled changes.
pub fn write_txn(w: &mut dyn Write, txn: &mut AssembledTxn, buf: &mut Vec<u8>) -> Result<()> {
    let io = |e| CaptureError::io("write JSON lines output", e);
    buf.clear();
    write_head(buf, &txn.txn);
    if let Some(ddl) = &txn.txn.ddl {
        buf.extend_from_slice(b",\"ddl\":");
        json_str(buf, &ddl.statement);
        buf.extend_from_slice(b",\"db\":");
        json_str(buf, &ddl.database);
        buf.extend_from_slice(b"}\n");
        return w.write_all(buf).map_err(io);
    }
    buf.extend_from_slice(b",\"changes\":[");
    let mut first = true;
    txn.for_each_change(|c| {
        if !first {
            buf.push(b',');
        }
        first = false;
        write_change(buf, c);
        if buf.len() > 1 << 20 {
            w.write_all(buf).map_err(io)?;
            buf.clear();
        }
        Ok(())
    })?;
    buf.extend_from_slice(b"]}\n");
    w.write_all(buf).map_err(io)
}
