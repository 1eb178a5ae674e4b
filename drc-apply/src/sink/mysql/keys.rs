//! Dependency keys of row changes, for parallel apply.
//!
//! Two changes must be applied in source order when they may touch the same
//! target row, or when one needs a row the other writes (a child row and its
//! parent). Each change is given a set of 64-bit keys; changes whose sets
//! meet are dependent. A key is a hash of (schema, table, a key column list,
//! the values of those columns) for:
//!
//! - every key column list of the change's table ([`TableMeta::key_lists`]:
//!   primary key, unique keys, column lists referenced by foreign keys), in
//!   the before and the after image;
//! - every foreign key of the table, with the child's values, under the
//!   parent's table and referenced columns: the same key the parent row has.
//!
//! The keys only ever over-approximate: a hash collision, or text folded to
//! lowercase without its trailing spaces (as case-insensitive, PAD SPACE
//! collations compare it), can only make independent changes wait for each
//! other. Where the sink cannot tell (a table without any key, a key column
//! missing from a MINIMAL image, a column list it cannot map), the change
//! gets its table's key, which orders it after every change of the table.
//! Collation equivalences beyond case and trailing spaces (accents, `ß` and
//! `ss`) are not folded: such a missed order shows up as a duplicate key or
//! a missing row, on which the sink rolls back and applies the batch again
//! one transaction after another (see `parallel.rs`).

use std::hash::{DefaultHasher, Hash, Hasher};

use drc_proto::v1 as pb;
use pb::value::Kind;
use prost::Message;

use super::meta::TableMeta;

/// Appends the dependency keys of `change` to `out`.
pub fn change_keys(change: &pb::RowChange, meta: Option<&TableMeta>, out: &mut Vec<u64>) {
    let schema = change.schema.to_lowercase();
    let table = change.table.to_lowercase();
    let Some(meta) = meta else {
        out.push(table_key(&schema, &table));
        return;
    };
    let images = [change.before.as_ref(), change.after.as_ref()];
    let mut lists: Vec<&[String]> = meta.key_lists.iter().map(Vec::as_slice).collect();
    let pk: Vec<String>;
    if lists.is_empty() && !change.primary_key.is_empty() {
        // The target knows no key, the source does: use the source's.
        pk = change
            .primary_key
            .iter()
            .filter_map(|&i| change.columns.get(i as usize))
            .map(|c| c.name.to_lowercase())
            .collect();
        lists.push(&pk);
    }
    if lists.is_empty() {
        out.push(table_key(&schema, &table));
        return;
    }
    for list in lists {
        for row in images.into_iter().flatten() {
            match list_key(change, row, &schema, &table, list, list) {
                Some(Some(k)) => out.push(k),
                Some(None) => {}
                None => {
                    out.push(table_key(&schema, &table));
                    return;
                }
            }
        }
    }
    for fk in &meta.foreign_keys {
        for row in images.into_iter().flatten() {
            match list_key(
                change,
                row,
                &fk.parent.0,
                &fk.parent.1,
                &fk.columns,
                &fk.parent_columns,
            ) {
                Some(Some(k)) => out.push(k),
                Some(None) => {}
                // The reference cannot be read: order after every change
                // of the parent table.
                None => out.push(table_key(&fk.parent.0, &fk.parent.1)),
            }
        }
    }
}

/// The key that orders a change after every change of its table.
pub fn table_key(schema: &str, table: &str) -> u64 {
    let mut h = DefaultHasher::new();
    ("table", schema, table).hash(&mut h);
    h.finish()
}

/// The key of the values of `columns` (names in the change) in `row`, filed
/// under `schema.table(list_names)`. `Some(None)`: a value is NULL, which
/// matches nothing. `None`: a column is unknown or absent from the image.
fn list_key(
    change: &pb::RowChange,
    row: &pb::Row,
    schema: &str,
    table: &str,
    columns: &[String],
    list_names: &[String],
) -> Option<Option<u64>> {
    let mut h = DefaultHasher::new();
    ("key", schema, table, list_names).hash(&mut h);
    let mut buf = Vec::new();
    for name in columns {
        let i = change
            .columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))?;
        let kind = row.values.get(i)?.kind.as_ref()?;
        match kind {
            Kind::Null(_) => return Some(None),
            Kind::Text(s) | Kind::EnumLabel(s) => {
                1u8.hash(&mut h);
                s.trim_end_matches(' ').to_lowercase().hash(&mut h);
            }
            other => {
                buf.clear();
                pb::Value {
                    kind: Some(other.clone()),
                }
                .encode(&mut buf)
                .ok()?;
                2u8.hash(&mut h);
                buf.hash(&mut h);
            }
        }
    }
    Some(Some(h.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::mysql::meta::ForeignKey;

    fn col(name: &str) -> pb::Column {
        pb::Column {
            name: name.into(),
            ..Default::default()
        }
    }

    fn row(values: Vec<Kind>) -> pb::Row {
        pb::Row {
            values: values
                .into_iter()
                .map(|k| pb::Value { kind: Some(k) })
                .collect(),
        }
    }

    fn insert(schema: &str, table: &str, cols: &[&str], values: Vec<Kind>) -> pb::RowChange {
        pb::RowChange {
            op: pb::Op::Insert as i32,
            schema: schema.into(),
            table: table.into(),
            columns: cols.iter().map(|c| col(c)).collect(),
            primary_key: vec![0],
            before: None,
            after: Some(row(values)),
        }
    }

    fn keys(c: &pb::RowChange, m: &TableMeta) -> Vec<u64> {
        let mut out = Vec::new();
        change_keys(c, Some(m), &mut out);
        out
    }

    #[test]
    fn same_key_meets_and_other_keys_do_not() {
        let meta = TableMeta {
            key_lists: vec![vec!["id".into()], vec!["email".into()]],
            ..Default::default()
        };
        let a = insert(
            "s",
            "u",
            &["id", "email"],
            vec![Kind::Int(1), Kind::Text("A@x ".into())],
        );
        let b = insert(
            "s",
            "u",
            &["id", "email"],
            vec![Kind::Int(2), Kind::Text("a@X".into())],
        );
        let c = insert(
            "s",
            "u",
            &["id", "email"],
            vec![Kind::Int(3), Kind::Null(true)],
        );
        let (ka, kb, kc) = (keys(&a, &meta), keys(&b, &meta), keys(&c, &meta));
        // Different ids, emails equal up to case and trailing spaces.
        assert_eq!(ka.len(), 2);
        assert_ne!(ka[0], kb[0]);
        assert_eq!(ka[1], kb[1]);
        // NULL in a unique key matches nothing.
        assert_eq!(kc.len(), 1);
        assert!(!ka.contains(&kc[0]));
    }

    #[test]
    fn a_child_row_meets_its_parent() {
        let parent_meta = TableMeta {
            key_lists: vec![vec!["id".into()]],
            ..Default::default()
        };
        let child_meta = TableMeta {
            key_lists: vec![vec!["id".into()]],
            foreign_keys: vec![ForeignKey {
                columns: vec!["parent_id".into()],
                parent: ("s".into(), "parent".into()),
                parent_columns: vec!["id".into()],
            }],
            ..Default::default()
        };
        let p = insert("s", "parent", &["id"], vec![Kind::Int(7)]);
        let c = insert(
            "s",
            "child",
            &["id", "parent_id"],
            vec![Kind::Int(1), Kind::Int(7)],
        );
        let other = insert(
            "s",
            "child",
            &["id", "parent_id"],
            vec![Kind::Int(2), Kind::Int(8)],
        );
        let kp = keys(&p, &parent_meta);
        assert!(keys(&c, &child_meta).contains(&kp[0]));
        assert!(!keys(&other, &child_meta).contains(&kp[0]));
    }

    #[test]
    fn unknown_tables_and_absent_columns_take_the_table_key() {
        let a = insert("s", "t", &["id"], vec![Kind::Int(1)]);
        let mut out = Vec::new();
        change_keys(&a, None, &mut out);
        assert_eq!(out, vec![table_key("s", "t")]);
        let meta = TableMeta {
            key_lists: vec![vec!["missing".into()]],
            ..Default::default()
        };
        assert_eq!(keys(&a, &meta), vec![table_key("s", "t")]);
    }
}
