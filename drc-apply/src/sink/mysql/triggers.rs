//! Target triggers under the sink's trigger policy (see
//! [`super::meta::TriggerPolicy`]): before the first write into a table, its
//! unguarded triggers are guarded (rewritten so they do not fire for the
//! sink's sessions), left alone, or reported.

use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::meta::{self, TriggerPolicy};
use super::sql::{self, Flavor};
use super::{classify, SESSION_SETUP, SINK_NAME};
use crate::error::{ApplyError, Result};

pub(super) async fn handle(
    conn: &mut Conn,
    policy: TriggerPolicy,
    flavor: Flavor,
    schema: &str,
    table: &str,
    offset: u64,
) -> Result<()> {
    if policy == TriggerPolicy::Fire {
        return Ok(());
    }
    let what = format!("read the triggers of {schema}.{table}");
    let triggers = meta::unguarded_triggers(conn, schema, table)
        .await
        .map_err(|e| classify(e, Some(offset), &what))?;
    if triggers.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = triggers.iter().map(|t| t.name.as_str()).collect();
    if policy == TriggerPolicy::Fail {
        return Err(ApplyError::Definite {
            sink: SINK_NAME.into(),
            offset,
            message: format!(
                "{schema}.{table} has triggers ({}) that would write again what the stream \
                 already carries; set the sink's `triggers = \"guard\"` to let the sink guard \
                 them, or `\"fire\"` to let them fire",
                names.join(", ")
            ),
        });
    }
    // Keep the guard out of the target's binlog where allowed: it is this
    // target's own business, not a change to replicate.
    let quiet = conn.query_drop("SET SESSION sql_log_bin = 0").await.is_ok();
    let r = guard(conn, flavor, schema, &triggers, offset).await;
    if quiet {
        let _ = conn.query_drop("SET SESSION sql_log_bin = 1").await;
    }
    let _ = conn.query_drop(SESSION_SETUP[1]).await;
    r?;
    tracing::info!(table = %format!("{schema}.{table}"), triggers = %names.join(", "), "mysql sink: triggers guarded");
    Ok(())
}

async fn guard(
    conn: &mut Conn,
    flavor: Flavor,
    schema: &str,
    triggers: &[meta::Trigger],
    offset: u64,
) -> Result<()> {
    for t in triggers {
        let name = sql::table_ref(schema, &t.name);
        let failed = |e| classify(e, Some(offset), &format!("guard trigger {name}"));
        let row: Option<mysql_async::Row> = conn
            .query_first(format!("SHOW CREATE TRIGGER {name}"))
            .await
            .map_err(failed)?;
        let create: Option<String> = row.as_ref().and_then(|r| r.get_opt(2)).and_then(|v| v.ok());
        let guarded = create
            .as_deref()
            .and_then(|c| meta::guarded_statement(c, &t.action, flavor == Flavor::MariaDb))
            .ok_or_else(|| ApplyError::Definite {
                sink: SINK_NAME.into(),
                offset,
                message: format!(
                    "cannot guard trigger {name}: its definition does not end with its body; \
                     guard it by hand (wrap the body in `IF @drc_apply IS NULL THEN ... END IF`) \
                     or set the sink's `triggers = \"fire\"`"
                ),
            })?;
        let mut set_mode = String::from("SET SESSION sql_mode = ");
        set_mode.push('\'');
        set_mode.push_str(&t.sql_mode.replace('\'', ""));
        set_mode.push('\'');
        conn.query_drop(set_mode).await.map_err(failed)?;
        let mut use_db = String::from("USE ");
        sql::push_ident(&mut use_db, schema);
        conn.query_drop(use_db).await.map_err(failed)?;
        if flavor == Flavor::MySql {
            conn.query_drop(format!("DROP TRIGGER IF EXISTS {name}"))
                .await
                .map_err(failed)?;
        }
        conn.query_drop(guarded).await.map_err(failed)?;
    }
    Ok(())
}
