//! Start-up checks on the source: binlog settings, privileges, and whether the
//! resume point is still in the server's binlogs. Each failure says what is
//! wrong and the fix, before anything is read.

use mysql_async::prelude::Queryable;

use crate::error::{CaptureError, Result};
use crate::position::{file_index, BinlogPos, MariaGtidList, MysqlGtidSet};

/// What the checks learned about the server.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub version: String,
    pub is_mariadb: bool,
    pub server_id: u32,
    pub checksum_crc32: bool,
    pub row_metadata: String,
    pub gtid_mode_on: bool,
}

async fn var(conn: &mut mysql_async::Conn, name: &str) -> Result<Option<String>> {
    let sql = format!("SELECT @@{name}");
    match conn.query_first::<Option<String>, _>(sql).await {
        Ok(v) => Ok(v.flatten()),
        // Unknown system variable on this server flavour/version.
        Err(mysql_async::Error::Server(e)) if e.code == 1193 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Checks binlog settings and privileges.
pub async fn check_source(conn: &mut mysql_async::Conn) -> Result<SourceInfo> {
    let version = var(conn, "version").await?.unwrap_or_default();
    let is_mariadb = version.to_ascii_lowercase().contains("mariadb");
    let log_bin = var(conn, "log_bin").await?.unwrap_or_default();
    if !matches!(log_bin.as_str(), "1" | "ON") {
        return Err(CaptureError::Source(
            "binary logging is off (log_bin=OFF): start the server with log_bin (e.g. --log-bin=mysql-bin) and binlog_format=ROW".into(),
        ));
    }
    let format = var(conn, "global.binlog_format").await?.unwrap_or_default();
    if !format.eq_ignore_ascii_case("ROW") {
        return Err(CaptureError::Source(format!(
            "binlog_format is {format}, capture needs ROW: SET GLOBAL binlog_format=ROW (and set it in the server config), then reconnect the applications"
        )));
    }
    let image = var(conn, "global.binlog_row_image")
        .await?
        .unwrap_or_else(|| "FULL".into());
    if !image.eq_ignore_ascii_case("FULL") {
        return Err(CaptureError::Source(format!(
            "binlog_row_image is {image}, capture needs FULL: SET GLOBAL binlog_row_image=FULL (and set it in the server config)"
        )));
    }
    check_privileges(conn, is_mariadb).await?;
    let server_id = var(conn, "server_id")
        .await?
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let checksum = var(conn, "global.binlog_checksum")
        .await?
        .unwrap_or_else(|| "NONE".into());
    let row_metadata = var(conn, "global.binlog_row_metadata")
        .await?
        .unwrap_or_else(|| "MINIMAL".into());
    let gtid_mode_on = if is_mariadb {
        true
    } else {
        var(conn, "global.gtid_mode")
            .await?
            .is_some_and(|m| m.eq_ignore_ascii_case("ON"))
    };
    Ok(SourceInfo {
        version,
        is_mariadb,
        server_id,
        checksum_crc32: checksum.eq_ignore_ascii_case("CRC32"),
        row_metadata,
        gtid_mode_on,
    })
}

async fn check_privileges(conn: &mut mysql_async::Conn, is_mariadb: bool) -> Result<()> {
    let grants: Vec<String> = conn.query("SHOW GRANTS").await?;
    // The privilege lists of the global grants: the words between GRANT
    // and ON *.* (never the user name, which may contain any word).
    let global: Vec<String> = grants
        .iter()
        .filter_map(|g| {
            let u = g.to_ascii_uppercase();
            let rest = u.strip_prefix("GRANT ")?;
            let (privs, _) = rest.split_once(" ON *.* ")?;
            Some(privs.to_string())
        })
        .collect();
    let has = |p: &str| {
        global.iter().any(|g| {
            g.split(',')
                .map(str::trim)
                .any(|x| x == "ALL PRIVILEGES" || x == "ALL" || x == p)
        })
    };
    let mut missing = Vec::new();
    if !has("REPLICATION SLAVE") {
        missing.push("REPLICATION SLAVE");
    }
    let client = has("REPLICATION CLIENT") || has("BINLOG MONITOR") || has("SUPER");
    if !client {
        missing.push(if is_mariadb {
            "REPLICATION CLIENT (BINLOG MONITOR)"
        } else {
            "REPLICATION CLIENT"
        });
    }
    // Database-level grants (e.g. MariaDB's default `test`.* TO PUBLIC) do
    // not let the schema snapshot see every table.
    if !has("SELECT") {
        missing.push("SELECT");
    }
    if !missing.is_empty() {
        return Err(CaptureError::Source(format!(
            "the capture user lacks {}: GRANT {} ON *.* TO the capture user",
            missing.join(", "),
            missing
                .iter()
                .map(|m| m.split(" (").next().unwrap_or(m))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}

/// The binlog files the server has, oldest first.
pub async fn binary_logs(conn: &mut mysql_async::Conn) -> Result<Vec<String>> {
    let rows: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.get_opt::<String, _>(0).and_then(|x| x.ok()))
        .collect())
}

/// The server's current write position.
pub async fn master_position(conn: &mut mysql_async::Conn) -> Result<BinlogPos> {
    let row: Option<mysql_async::Row> = conn.query_first("SHOW MASTER STATUS").await?;
    let row = row.ok_or_else(|| {
        CaptureError::Source("SHOW MASTER STATUS is empty: binary logging is off".into())
    })?;
    let file: String = row.get_opt(0).and_then(|x| x.ok()).unwrap_or_default();
    let pos: u64 = row.get_opt(1).and_then(|x| x.ok()).unwrap_or(4);
    Ok(BinlogPos::new(file, pos))
}

/// Refuses a file/position that the server no longer has.
pub async fn check_file_pos(conn: &mut mysql_async::Conn, at: &BinlogPos) -> Result<()> {
    let logs = binary_logs(conn).await?;
    if logs.contains(&at.file) {
        return Ok(());
    }
    let oldest = logs.first().cloned().unwrap_or_default();
    let older = match (file_index(&at.file), file_index(&oldest)) {
        (Some(a), Some(o)) => a < o,
        _ => false,
    };
    if older {
        Err(CaptureError::Purged(format!(
            "binlog {} was purged (the oldest on the server is {oldest}); re-seed the target (drc migrate) and start the capture from now",
            at.file
        )))
    } else {
        Err(CaptureError::Source(format!(
            "binlog {} does not exist on the server (it has {} to {}): check the file name",
            at.file,
            oldest,
            logs.last().cloned().unwrap_or_default()
        )))
    }
}

/// Refuses a MariaDB GTID position older than the oldest binlog's start.
pub async fn check_maria_gtid(conn: &mut mysql_async::Conn, start: &MariaGtidList) -> Result<()> {
    let logs = binary_logs(conn).await?;
    let Some(oldest) = logs.first() else {
        return Ok(());
    };
    let pos: Option<Option<String>> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, 4)", (oldest.as_str(),))
        .await?;
    let pos = pos.flatten().unwrap_or_default();
    let oldest_state: MariaGtidList = pos.parse().map_err(CaptureError::Source)?;
    for (domain, g) in &oldest_state.0 {
        let have = start.0.get(domain).map_or(0, |s| s.seq);
        if have < g.seq {
            return Err(CaptureError::Purged(format!(
                "the resume point {start} needs domain {domain} after seq {have}, but the oldest binlog {oldest} starts after {g}: those transactions were purged; re-seed the target (drc migrate) and start the capture from now"
            )));
        }
    }
    Ok(())
}

/// Refuses a MySQL GTID set that lacks transactions the server purged.
pub async fn check_mysql_gtid(conn: &mut mysql_async::Conn, start: &MysqlGtidSet) -> Result<()> {
    let purged = var(conn, "global.gtid_purged").await?.unwrap_or_default();
    let purged: MysqlGtidSet = purged
        .replace('\n', "")
        .parse()
        .map_err(CaptureError::Source)?;
    if !start.is_superset_of(&purged) {
        return Err(CaptureError::Purged(format!(
            "the server purged {purged}, which the resume point {start} does not contain; re-seed the target and start the capture from now"
        )));
    }
    Ok(())
}
