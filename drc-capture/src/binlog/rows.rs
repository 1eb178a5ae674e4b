//! Rows events (v1, v2, MySQL PARTIAL_UPDATE_ROWS and MariaDB's compressed
//! forms) decoded into whole row images with a table's [`TablePlan`].
//!
//! Live capture requires whole images (`binlog_row_image=FULL`, checked at
//! start). Files written with MINIMAL or NOBLOB images still decode: a column
//! missing from an UPDATE's after image takes its before-image value (the
//! server left it unchanged); any other missing column is a value with no kind
//! ("absent", distinct from SQL NULL), which JSON lines omit.

use drc_proto::v1 as pb;

use super::cursor::Cursor;
use super::event::{types, FormatDescription};
use super::events::mariadb_uncompress;
use crate::decode::json_diff;
use crate::decode::plan::{ColKind, TablePlan};
use crate::decode::values::{decode_value, null, read_prefixed};

/// What a rows event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsKind {
    Write,
    Update,
    Delete,
}

/// A rows event's framing, before its rows are decoded.
#[derive(Debug, Clone)]
pub struct RowsHeader {
    pub kind: RowsKind,
    pub table_id: u64,
    pub flags: u16,
    pub partial: bool,
    pub width: usize,
}

/// Classifies a rows event type: (kind, version 2, compressed, partial).
pub fn rows_type(code: u8) -> Option<(RowsKind, bool, bool, bool)> {
    use types::*;
    Some(match code {
        WRITE_ROWS_V1 => (RowsKind::Write, false, false, false),
        UPDATE_ROWS_V1 => (RowsKind::Update, false, false, false),
        DELETE_ROWS_V1 => (RowsKind::Delete, false, false, false),
        WRITE_ROWS_V2 => (RowsKind::Write, true, false, false),
        UPDATE_ROWS_V2 => (RowsKind::Update, true, false, false),
        DELETE_ROWS_V2 => (RowsKind::Delete, true, false, false),
        PARTIAL_UPDATE_ROWS => (RowsKind::Update, true, false, true),
        MARIA_WRITE_ROWS_COMPRESSED_V1 => (RowsKind::Write, false, true, false),
        MARIA_UPDATE_ROWS_COMPRESSED_V1 => (RowsKind::Update, false, true, false),
        MARIA_DELETE_ROWS_COMPRESSED_V1 => (RowsKind::Delete, false, true, false),
        MARIA_WRITE_ROWS_COMPRESSED => (RowsKind::Write, true, true, false),
        MARIA_UPDATE_ROWS_COMPRESSED => (RowsKind::Update, true, true, false),
        MARIA_DELETE_ROWS_COMPRESSED => (RowsKind::Delete, true, true, false),
        _ => return None,
    })
}

/// A parsed rows event: header, column bitmaps, and the (possibly
/// decompressed) row data.
pub struct RowsEvent<'a> {
    pub header: RowsHeader,
    present_before: Vec<bool>,
    present_after: Vec<bool>,
    data: std::borrow::Cow<'a, [u8]>,
}

fn sh(e: super::cursor::Short) -> String {
    format!("rows event: {e}")
}

fn bitmap(c: &mut Cursor<'_>, n: usize) -> Result<Vec<bool>, String> {
    let b = c.take(n.div_ceil(8), "column bitmap").map_err(sh)?;
    Ok((0..n).map(|i| b[i / 8] & (1 << (i % 8)) != 0).collect())
}

/// Parses the header and bitmaps of a rows event of type `code`.
pub fn parse_rows<'a>(
    code: u8,
    body: &'a [u8],
    fde: &FormatDescription,
) -> Result<RowsEvent<'a>, String> {
    let (kind, v2, compressed, partial) =
        rows_type(code).ok_or_else(|| format!("event type {code} is not a rows event"))?;
    let mut c = Cursor::new(body);
    let id_len = if fde.post_header_len(code, 8) == 6 {
        4
    } else {
        6
    };
    let table_id = c.uint_le(id_len, "table id").map_err(sh)?;
    let flags = c.u16("flags").map_err(sh)?;
    if v2 {
        let extra = usize::from(c.u16("extra info length").map_err(sh)?);
        c.skip(extra.saturating_sub(2), "extra info").map_err(sh)?;
    }
    // A column count, not a byte length: a row of NULLs in a wide table is
    // shorter than its column count. MySQL tables have at most 4096 columns.
    let width = c.lenenc("column count").map_err(sh)?;
    if width > 4096 {
        return Err(format!("rows event: column count {width} exceeds 4096"));
    }
    let width = width as usize;
    let present_before = bitmap(&mut c, width)?;
    let present_after = if kind == RowsKind::Update {
        bitmap(&mut c, width)?
    } else {
        present_before.clone()
    };
    let rest = c.rest();
    let data = if compressed {
        std::borrow::Cow::Owned(
            mariadb_uncompress(rest).map_err(|e| format!("compressed rows event: {e}"))?,
        )
    } else {
        std::borrow::Cow::Borrowed(rest)
    };
    Ok(RowsEvent {
        header: RowsHeader {
            kind,
            table_id,
            flags,
            partial,
            width,
        },
        present_before,
        present_after,
        data,
    })
}

/// One decoded row: before and after images in column order.
pub type RowPair = (Option<pb::Row>, Option<pb::Row>);

impl RowsEvent<'_> {
    /// Decodes every row with `plan`, calling `emit` for each.
    pub fn decode(
        &self,
        plan: &TablePlan,
        mut emit: impl FnMut(RowPair) -> Result<(), String>,
    ) -> Result<(), String> {
        if self.header.width != plan.cols.len() {
            return Err(format!(
                "rows event for {}.{} has {} columns, its table map {}",
                plan.db,
                plan.table,
                self.header.width,
                plan.cols.len()
            ));
        }
        let mut c = Cursor::new(&self.data);
        while !c.is_empty() {
            match self.header.kind {
                RowsKind::Write => {
                    let after = read_image(&mut c, plan, &self.present_after, None, false)?;
                    emit((None, Some(after)))?;
                }
                RowsKind::Delete => {
                    let before = read_image(&mut c, plan, &self.present_before, None, false)?;
                    emit((Some(before), None))?;
                }
                RowsKind::Update => {
                    let before = read_image(&mut c, plan, &self.present_before, None, false)?;
                    let after = read_image(
                        &mut c,
                        plan,
                        &self.present_after,
                        Some(&before),
                        self.header.partial,
                    )?;
                    emit((Some(before), Some(after)))?;
                }
            }
        }
        Ok(())
    }
}

fn read_image(
    c: &mut Cursor<'_>,
    plan: &TablePlan,
    present: &[bool],
    before: Option<&pb::Row>,
    partial_event: bool,
) -> Result<pb::Row, String> {
    // PARTIAL_UPDATE_ROWS after images start with value options; bit 0 says
    // some JSON columns carry diffs, flagged in a bitmap over the JSON columns.
    let mut partial_json: Vec<bool> = Vec::new();
    if partial_event && before.is_some() {
        let opts = c.lenenc("value options").map_err(sh)?;
        if opts & 1 != 0 {
            let json_cols = plan
                .cols
                .iter()
                .zip(present)
                .filter(|(p, &pr)| pr && matches!(p.kind, ColKind::Json { .. }))
                .count();
            let b = c
                .take(json_cols.div_ceil(8), "partial JSON bitmap")
                .map_err(sh)?;
            partial_json = (0..json_cols)
                .map(|i| b[i / 8] & (1 << (i % 8)) != 0)
                .collect();
        }
    }
    let n_present = present.iter().filter(|&&p| p).count();
    let nulls = c.take(n_present.div_ceil(8), "null bitmap").map_err(sh)?;
    let mut values = Vec::with_capacity(plan.cols.len());
    let mut k = 0usize;
    let mut json_k = 0usize;
    for (i, col) in plan.cols.iter().enumerate() {
        if !present.get(i).copied().unwrap_or(false) {
            // Not in this image (binlog_row_image MINIMAL/NOBLOB). An UPDATE
            // left the column as it was; otherwise the value is unknown and
            // stays without a kind ("absent", distinct from SQL NULL).
            values.push(
                before
                    .and_then(|b| b.values.get(i))
                    .cloned()
                    .unwrap_or_default(),
            );
            continue;
        }
        let is_null = nulls[k / 8] & (1 << (k % 8)) != 0;
        k += 1;
        let is_json = matches!(col.kind, ColKind::Json { .. });
        let diff = is_json && partial_json.get(json_k).copied().unwrap_or(false);
        if is_json {
            json_k += 1;
        }
        if is_null {
            values.push(null());
            continue;
        }
        let value = if diff {
            apply_partial_json(c, col, before.and_then(|b| b.values.get(i)))
        } else {
            decode_value(c, &col.kind)
        }
        .map_err(|e| format!("{}.{}.{}: {e}", plan.db, plan.table, col.name))?;
        values.push(value);
    }
    Ok(pb::Row { values })
}

fn apply_partial_json(
    c: &mut Cursor<'_>,
    col: &crate::decode::plan::ColPlan,
    before: Option<&pb::Value>,
) -> Result<pb::Value, String> {
    let ColKind::Json { len_bytes } = col.kind else {
        return Err("partial update of a non-JSON column".into());
    };
    let diffs_raw = read_prefixed(c, len_bytes)?;
    let diffs = json_diff::parse_json_diffs(diffs_raw)?;
    let mut doc = match before.and_then(|v| v.kind.as_ref()) {
        Some(pb::value::Kind::Json(text)) => serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| format!("before image JSON: {e}"))?,
        _ => {
            return Err(
                "the event carries a JSON diff but the before image lacks the document \
                 (binlog_row_image=MINIMAL), so the whole after image cannot be built: \
                 set binlog_row_image=FULL on the source"
                    .into(),
            )
        }
    };
    json_diff::apply_json_diffs(&mut doc, &diffs)?;
    Ok(pb::Value {
        kind: Some(pb::value::Kind::Json(doc.to_string())),
    })
}
