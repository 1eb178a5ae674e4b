//! What the relay reads out of a stored record without decoding it whole.
//!
//! A record is one encoded `drc.v1.Transaction`. The relay needs only its
//! source position (dedup, resume, status), its origin, and the `db.table` of
//! each row change (filters). The messages below name just those fields of
//! `drc.proto` with the same tags; protobuf skips the rest (row images, column
//! lists) without allocating them, so reading a record's head costs a scan,
//! not a decode.

use bytes::Bytes;
use drc_proto::v1::SourcePosition;
use prost::Message;

use crate::error::{RelayError, Result};

/// `drc.v1.Transaction`, position, commit time and origin only.
#[derive(Clone, PartialEq, Message)]
pub struct TransactionHead {
    #[prost(message, optional, tag = "1")]
    pub position: Option<SourcePosition>,
    #[prost(int64, tag = "2")]
    pub commit_ts_us: i64,
    #[prost(string, tag = "4")]
    pub origin: String,
}

/// `drc.v1.Transaction`, the fields filters look at.
#[derive(Clone, PartialEq, Message)]
pub struct TransactionRoute {
    #[prost(string, tag = "4")]
    pub origin: String,
    #[prost(message, repeated, tag = "5")]
    pub changes: Vec<ChangeRoute>,
    #[prost(message, optional, tag = "6")]
    pub ddl: Option<DdlRoute>,
}

/// `drc.v1.RowChange`, schema and table only.
#[derive(Clone, PartialEq, Message)]
pub struct ChangeRoute {
    #[prost(string, tag = "2")]
    pub schema: String,
    #[prost(string, tag = "3")]
    pub table: String,
}

/// `drc.v1.Ddl`, statement presence and database only.
#[derive(Clone, PartialEq, Message)]
pub struct DdlRoute {
    #[prost(string, tag = "1")]
    pub statement: String,
    #[prost(string, tag = "2")]
    pub database: String,
}

/// The head of a record.
pub fn head(record: &Bytes) -> Result<TransactionHead> {
    TransactionHead::decode(record.clone())
        .map_err(|e| RelayError::InvalidRequest(format!("undecodable transaction: {e}")))
}

/// The routing fields of a record.
pub fn route(record: &Bytes) -> Result<TransactionRoute> {
    TransactionRoute::decode(record.clone())
        .map_err(|e| RelayError::Corrupt(format!("undecodable transaction: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use drc_proto::v1 as pb;

    #[test]
    fn partial_messages_read_the_full_encoding() {
        let tx = pb::Transaction {
            position: Some(pb::SourcePosition {
                gtid: "0-1-5".into(),
                file: "bin.000001".into(),
                pos: 400,
                gtid_set: "0-1-5".into(),
            }),
            commit_ts_us: 7,
            server_id: 1,
            origin: "b".into(),
            changes: vec![pb::RowChange {
                op: pb::Op::Insert as i32,
                schema: "shop".into(),
                table: "orders".into(),
                after: Some(pb::Row {
                    values: vec![pb::Value {
                        kind: Some(pb::value::Kind::Text("secret".into())),
                    }],
                }),
                ..Default::default()
            }],
            ddl: None,
        };
        let bytes = Bytes::from(tx.encode_to_vec());
        let h = head(&bytes).expect("head");
        assert_eq!(h.position, tx.position);
        assert_eq!(h.origin, "b");
        let r = route(&bytes).expect("route");
        assert_eq!(r.changes.len(), 1);
        assert_eq!(r.changes[0].schema, "shop");
        assert_eq!(r.changes[0].table, "orders");
        assert!(r.ddl.is_none());
        assert!(head(&Bytes::from_static(&[0xff, 0xff, 0xff])).is_err());
    }
}
