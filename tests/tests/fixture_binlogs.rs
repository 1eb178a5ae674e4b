//! Recorded MySQL 5.5–9.6 and MariaDB binlog files (../shared/fixtures/binlogs)
//! decoded offline, asserting the values the servers wrote: compressed
//! transaction payloads, binary and partial JSON, tagged GTIDs, invisible
//! columns, minimal metadata, BIT, ENUM/SET, TIME, VECTOR, checksums on and off.

use drc_capture::binlog::file::read_file;
use drc_capture::decoder::{DecoderOptions, StreamDecoder};
use drc_capture::output::jsonl;
use drc_proto::v1 as pb;
use drc_tests::{shared_fixtures_dir, skip};
use serde_json::{json, Value};

/// Every transaction of a fixture as JSON lines values and as protobuf.
type Decoded = (Vec<Value>, Vec<pb::Transaction>);

fn decode(name: &str) -> Option<Result<Decoded, String>> {
    let dir = shared_fixtures_dir()?;
    let mut dec = StreamDecoder::offline(DecoderOptions::default());
    let mut json_out = Vec::new();
    let mut txns = Vec::new();
    let mut buf = Vec::new();
    let r = read_file(&dir.join(name), &mut dec, &mut |mut t| {
        let mut line = Vec::new();
        jsonl::write_txn(&mut line, &mut t, &mut buf)?;
        json_out.push(serde_json::from_slice(&line).expect("valid JSON line"));
        txns.push(t.into_transaction()?);
        Ok(())
    });
    Some(r.map(|()| (json_out, txns)).map_err(|e| e.to_string()))
}

macro_rules! fixture {
    ($name:expr) => {
        match decode($name) {
            None => skip!("../shared/fixtures/binlogs is absent"),
            Some(r) => r.expect($name),
        }
    };
}

fn changes(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter_map(|l| l.get("changes").and_then(Value::as_array))
        .flatten()
        .collect()
}

fn ddls(lines: &[Value]) -> Vec<&str> {
    lines.iter().filter_map(|l| l["ddl"].as_str()).collect()
}

#[test]
fn mysql_transaction_payload_zstd() {
    let (lines, txns) = fixture!("mysql-common__transaction_compression.000001");
    let ch = changes(&lines);
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0]["op"], "insert");
    assert_eq!(
        (ch[0]["db"].as_str(), ch[0]["table"].as_str()),
        (Some("test"), Some("tb1"))
    );
    assert_eq!(ch[0]["after"], json!({"@1": 1}));
    // The transaction's position is the payload event's end.
    assert_eq!(
        txns.last().and_then(|t| t.position.as_ref()).map(|p| p.pos),
        Some(431)
    );
    let (lines, _) = fixture!("binlog-connector-java__mysql-bin.compressed");
    let ch = changes(&lines);
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0]["op"], "update");
    assert_eq!(ch[0]["before"]["@2"], "Once Upon a Time in the West");
    assert_eq!(ch[0]["before"]["@3"], 1968);
    assert_eq!(ch[0]["after"]["@2"], "Once Upon a Time in the West");
}

#[test]
fn mysql_binary_json_and_partial_json() {
    let dir = match shared_fixtures_dir() {
        Some(d) => d,
        None => skip!("../shared/fixtures/binlogs is absent"),
    };
    // Decode up to the partial update; the file's PARTIAL_UPDATE_ROWS was
    // written with a MINIMAL before image, so the capture must refuse it
    // with the reason rather than emit a half document.
    let mut dec = StreamDecoder::offline(DecoderOptions::default());
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    let err = read_file(
        &dir.join("mysql-common__json.binlog.000001"),
        &mut dec,
        &mut |mut t| {
            let mut line = Vec::new();
            jsonl::write_txn(&mut line, &mut t, &mut buf)?;
            lines.push(serde_json::from_slice::<Value>(&line).expect("json"));
            Ok(())
        },
    )
    .expect_err("partial JSON without a before image");
    let msg = err.to_string();
    assert!(
        msg.contains("PARTIAL_UPDATE_ROWS (39)")
            && msg.contains(":3750")
            && msg.contains("binlog_row_image=FULL"),
        "{msg}"
    );
    let ch = changes(&lines);
    assert_eq!(
        ch[0]["after"],
        json!({"@1": 1, "@2": {"age": 24, "data": "xxxxxxxxxx", "name": "Joe"}, "@3": "Joe", "@4": 24})
    );
    assert_eq!(
        ch[2]["after"]["@2"],
        json!({"age": 40, "data": "zzzzzzzzzz", "name": "Pete"})
    );
    // Key order as MySQL stores it (shorter keys first), not as inserted.
    let keys: Vec<&String> = ch[0]["after"]["@2"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, ["age", "data", "name"]);
    let updates: Vec<&&Value> = ch.iter().filter(|c| c["op"] == "update").collect();
    assert_eq!(updates[0]["before"]["@2"]["age"], 24);
    assert_eq!(updates[0]["after"]["@2"]["age"], 25);

    let (lines, _) = fixture!("mysql-common__json-opaque.binlog");
    let docs: Vec<Value> = changes(&lines)
        .iter()
        .map(|c| c["after"]["a"].clone())
        .collect();
    assert_eq!(docs[0], json!({"a": "base64:type15:VQ=="}));
    assert_eq!(docs[1], json!({"b": "2012-03-18"}));
    assert_eq!(docs[2], json!({"c": "2012-03-18 11:30:45.000000"}));
    assert_eq!(docs[3], json!({"c": "87:31:46.654321"}));
    assert_eq!(docs[4], json!({"d": 123.456}));
    assert_eq!(docs[6], json!({"e": [0, 1, true, false]}));
    assert_eq!(docs[7], json!({"e": null}));
}

#[test]
fn mysql_json_diff_vectors_from_the_recorded_partial_update() {
    // The diff bytes of the recorded PARTIAL_UPDATE_ROWS event, parsed and
    // applied to the documents the earlier events carried.
    use drc_capture::decode::json_diff::{apply_json_diffs, parse_json_diffs, DiffOp};
    let Some(dir) = shared_fixtures_dir() else {
        skip!("../shared/fixtures/binlogs is absent");
    };
    let file = std::fs::read(dir.join("mysql-common__json.binlog.000001")).expect("read");
    let ev = &file[3750..];
    let size = u32::from_le_bytes([ev[9], ev[10], ev[11], ev[12]]) as usize;
    let ev = &ev[..size];
    assert_eq!(ev[4], 39, "PARTIAL_UPDATE_ROWS at 3750");
    // Find each `$.age` diff: op REPLACE(0), path length 5, "$.age".
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(p) = ev[i..]
        .windows(7)
        .position(|w| w == [0, 5, b'$', b'.', b'a', b'g', b'e'])
    {
        let at = i + p;
        // The column value before it: a 4-byte length prefix then the diffs.
        let len = u32::from_le_bytes([ev[at - 4], ev[at - 3], ev[at - 2], ev[at - 1]]) as usize;
        let diffs = parse_json_diffs(&ev[at..at + len]).expect("diffs parse");
        found.push(diffs);
        i = at + 7;
    }
    let values: Vec<Option<Value>> = found.iter().map(|d| d[0].value.clone()).collect();
    assert_eq!(
        values,
        [26, 34, 42, 26, 34, 42]
            .iter()
            .map(|v| Some(json!(v)))
            .collect::<Vec<_>>(),
        "six rows updated"
    );
    let mut doc = json!({"age": 25, "data": "xxxxxxxxxx", "name": "Joe"});
    assert_eq!(found[0].len(), 1);
    assert_eq!(found[0][0].op, DiffOp::Replace);
    assert_eq!(found[0][0].path, "$.age");
    apply_json_diffs(&mut doc, &found[0]).expect("apply");
    assert_eq!(doc, json!({"age": 26, "data": "xxxxxxxxxx", "name": "Joe"}));
}

#[test]
fn mysql_tagged_gtid() {
    let (lines, txns) = fixture!("mysql-common__binlog_transaction_with_GTID_TAG.000001");
    assert_eq!(
        lines[0]["gtid"],
        "55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:3"
    );
    let ch = changes(&lines);
    assert_eq!(ch[0]["after"], json!({"@1": 3, "@2": 100, "@3": "250.00"}));
    let pos = txns[0].position.clone().expect("position");
    assert!(pos.gtid_set.contains("mytag:3"), "{}", pos.gtid_set);
}

#[test]
fn mysql_invisible_columns_and_untagged_gtids() {
    let (lines, _) = fixture!("mysql-common__binlog-invisible-columns.000001");
    let ch = changes(&lines);
    assert_eq!(ch.len(), 3);
    assert_eq!(
        ch[0]["after"],
        json!({"f1": 1, "f2": 2, "f3": -3, "f4": "4", "f5": {"base64": "BQ=="}, "f6": 6000000000u64})
    );
    assert_eq!(ch[2]["after"]["f1"], 111);
    assert_eq!(ch[2]["after"]["f3"], -333);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.get("changes").is_some())
            .map(|l| l["gtid"].as_str().unwrap_or(""))
            .next(),
        Some("97c7af02-4c50-11ec-acd8-681842034964:3")
    );
}

#[test]
fn mysql_minimal_metadata_and_image() {
    let (lines, txns) = fixture!("mysql-common__minimal_row_metadata.000001");
    let ch = changes(&lines);
    assert_eq!(ch.len(), 1);
    // No names in MINIMAL metadata and no DDL in the file: positional names;
    // columns not in the (MINIMAL) row image are absent, not NULL.
    assert_eq!(
        ch[0]["after"],
        json!({"@1": 1, "@3": "a", "@5": 3230202323u64})
    );
    let after = txns[0].changes[0].after.as_ref().expect("after");
    assert!(after.values[1].kind.is_none(), "absent, not NULL");
    assert_eq!(
        after.values[4].kind,
        Some(pb::value::Kind::Uint(3230202323))
    );
}

#[test]
fn mysql_bit_enum_set_time_vector() {
    let (lines, _) = fixture!("mysql-common__mysql_type_bit.000001");
    assert_eq!(
        changes(&lines)[0]["after"],
        json!({"a": 4, "b": "foo", "c": 32})
    );
    assert!(ddls(&lines).contains(&"CREATE TABLE foo(a BIT(3), b TEXT, c BIT(8))"));

    let (lines, _) = fixture!("mysql-common__mysql-enum-string-set.000001");
    let ch = changes(&lines);
    assert_eq!(ch[0]["after"]["f3"], "var1");
    assert_eq!(ch[0]["after"]["f4"], json!(["one", "three"]));
    assert_eq!(ch[1]["after"]["f3"], "variant2");
    assert_eq!(ch[1]["after"]["f4"], json!(["two", "four"]));
    assert_eq!(ch[1]["after"]["f1"], "field1");
    assert_eq!(ch[2]["op"], "delete");

    let (lines, txns) = fixture!("mysql-common__time_issue.000001");
    assert_eq!(changes(&lines)[0]["after"], json!({"@1": "-507:48:27"}));
    match txns[0].changes[0]
        .after
        .as_ref()
        .and_then(|r| r.values[0].kind.clone())
    {
        Some(pb::value::Kind::Time(t)) => {
            assert!(t.negative);
            assert_eq!((t.hours, t.minutes, t.seconds, t.micros), (507, 48, 27, 0));
        }
        other => panic!("TIME expected, got {other:?}"),
    }

    let (lines, _) = fixture!("mysql-common__vector.binlog");
    let ch = changes(&lines);
    assert_eq!(
        ch[0]["after"],
        json!({"id": 1, "vector_column": [1.1, 2.2, 3.3]})
    );
    assert_eq!(
        ch[3]["after"]["vector_column2"],
        json!([42.0, 43.0, 44.0, 45.0])
    );
    assert_eq!(ch[3]["after"]["foo"], json!({"base64": "YmFy"}));
}

#[test]
fn mariadb_gtids_annotate_and_checkpoints() {
    let (lines, txns) = fixture!("mysql-common__mariadb-bin.000001");
    let gtids: Vec<&str> = lines
        .iter()
        .map(|l| l["gtid"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(gtids, ["0-1-1", "0-1-2"]);
    assert_eq!(
        txns[1].position.as_ref().map(|p| p.gtid_set.as_str()),
        Some("0-1-2")
    );
    let ch = changes(&lines);
    assert_eq!(
        ch[0]["after"],
        json!({"id": 62, "topic": "foo", "event_type": "JSON", "event": {"base64": "eyJmb28iOjF9"}, "created": "2022-04-20 22:18:04"})
    );
    assert_eq!(ch[0]["pk"], json!(["id"]));
}

#[test]
fn mysql_checksums_on_and_off_and_old_row_events() {
    let (lines, _) = fixture!("binlog-connector-java__mysql-bin.checksum-crc32");
    let ch = changes(&lines);
    assert_eq!(ch.len(), 63);
    assert_eq!(ch[0]["after"]["@1"], 12300113);
    assert_eq!(ch[0]["after"]["@2"], "test2");
    assert_eq!(ch[0]["after"]["@5"], "2018-05-04 08:31:59");

    let (lines, _) = fixture!("binlog-connector-java__mysql-bin.checksum-none");
    // Names learned from the CREATE TABLE in the same file.
    let first = changes(&lines)[0];
    assert_eq!(first["table"], "account");
    assert_eq!(first["pk"], json!(["id"]));
    assert_eq!(first["after"]["id"], "42b0a771-9345-4b19-b503-d51b5fff30ef");
    assert_eq!(first["after"]["username"], "test_user_name");

    let (lines, _) = fixture!("binlog-connector-java__mysql-bin.sakila.gz");
    let ch = changes(&lines);
    assert_eq!(ch.len(), 47273);
    assert_eq!(
        ch[0]["after"],
        json!({"actor_id": 1, "first_name": "PENELOPE", "last_name": "GUINESS", "last_update": "2006-02-15 03:34:33"})
    );
    assert!(ddls(&lines)
        .iter()
        .any(|d| d.starts_with("CREATE TABLE actor")));
}
