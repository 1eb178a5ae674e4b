//! How the MySQL/MariaDB sink classifies the server's errors: transient
//! (the open groups are rolled back and the applier retries from the
//! checkpoint) or definite (the stream stops at the offset), with a hint that
//! names the fix for the errors of a target that does not match its stream.
//! Messages of row statements keep only the server's code and state: the
//! server's text can quote row values.

use super::write::{self, Ctx};
use super::SINK_NAME;
use crate::error::ApplyError;

/// Server errors worth a retry: too many connections (1040), shutdown in
/// progress (1053), lock wait timeout (1205), deadlock (1213), read-only
/// (1290, 1836), query interrupted (1317), connection killed (1927), server
/// gone or lost (2006, 2013), idle disconnect (4031).
const TRANSIENT_CODES: [u16; 11] = [
    1040, 1053, 1205, 1213, 1290, 1836, 1317, 1927, 2006, 2013, 4031,
];

pub(super) fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

pub(super) fn is_transient(e: &mysql_async::Error) -> bool {
    use mysql_async::DriverError as D;
    match e {
        mysql_async::Error::Io(_) | mysql_async::Error::Other(_) => true,
        mysql_async::Error::Driver(d) => matches!(
            d,
            D::ConnectionClosed
                | D::PacketOutOfOrder
                | D::PoolDisconnected
                | D::UnexpectedPacket { .. }
                | D::BadCompressedPacketHeader
        ),
        mysql_async::Error::Server(s) => TRANSIENT_CODES.contains(&s.code),
        mysql_async::Error::Url(_) => false,
    }
}

/// An error of a statement that holds no row values: the server's message
/// is kept.
pub(super) fn classify_with_message(
    e: mysql_async::Error,
    offset: Option<u64>,
    what: &str,
) -> ApplyError {
    if is_transient(&e) {
        return ApplyError::Transient {
            sink: SINK_NAME.into(),
            message: format!("{what}: {e}"),
        };
    }
    match offset {
        Some(offset) => ApplyError::Definite {
            sink: SINK_NAME.into(),
            offset,
            message: format!("{what}: {e}"),
        },
        None => ApplyError::Definite {
            sink: SINK_NAME.into(),
            offset: 0,
            message: format!("{what}: {e}"),
        },
    }
}

/// [`classify_with_message`] for bookkeeping statements.
pub(super) fn classify(e: mysql_async::Error, offset: Option<u64>, what: &str) -> ApplyError {
    if let mysql_async::Error::Url(u) = &e {
        return ApplyError::Config(format!("mysql sink: {what}: {u}"));
    }
    classify_with_message(e, offset, what)
}

/// An error of a row statement: server messages can quote row values, so
/// only the error code and state are kept.
pub(super) fn row_error(
    e: mysql_async::Error,
    ctx: Ctx<'_>,
    what: &str,
    table: &str,
) -> ApplyError {
    if is_transient(&e) {
        return ApplyError::Transient {
            sink: SINK_NAME.into(),
            message: format!("{what} {table}: {e}"),
        };
    }
    let detail = match &e {
        mysql_async::Error::Server(s) => {
            let hint = row_error_hint(s.code)
                .map(|h| format!(": {h}"))
                .unwrap_or_default();
            format!("server error {} ({}){hint}", s.code, s.state)
        }
        other => other.to_string(),
    };
    write::definite(ctx, format!("{what} {table}: {detail}"))
}

/// What a row error means for the operator, for the errors a target that
/// does not match its source gives.
fn row_error_hint(code: u16) -> Option<&'static str> {
    Some(match code {
        1142 | 1143 | 1044 | 1045 => {
            "the sink's user lacks a privilege on this table; grant it INSERT, UPDATE, DELETE (and \
             SELECT) on the replicated tables"
        }
        1146 => {
            "the table does not exist on the target; create it (as on the source) or replicate \
             from a position before its CREATE TABLE"
        }
        1054 => {
            "the target table has no column of this name; make its columns match the source's"
        }
        1136 => "the target table has other columns than the source's; make them match",
        1048 | 1364 => "the target refuses a NULL or missing value: make its column definitions match the source's",
        1264 | 1265 | 1366 | 1406 => {
            "the target column cannot hold the source's value (type, length or charset differ); make it match the source's"
        }
        1452 | 1451 => "a foreign key of the target refuses the row; the target's rows do not match the source's",
        4025 | 3819 => "a CHECK constraint of the target refuses the value; make it match the source's",
        _ => return None,
    })
}
