//! Events the decoder must refuse, loudly and with their position: an unknown
//! event type inside a transaction, an encrypted binlog, an incident.

use drc_capture::decoder::{DecoderOptions, StreamDecoder};
use drc_capture::error::CaptureError;

/// A v4 event with no checksum: header + body.
fn event(type_code: u8, log_pos: u32, body: &[u8]) -> Vec<u8> {
    let size = (19 + body.len()) as u32;
    let mut e = Vec::new();
    e.extend_from_slice(&1_700_000_000u32.to_le_bytes());
    e.push(type_code);
    e.extend_from_slice(&7u32.to_le_bytes());
    e.extend_from_slice(&size.to_le_bytes());
    e.extend_from_slice(&log_pos.to_le_bytes());
    e.extend_from_slice(&0u16.to_le_bytes());
    e.extend_from_slice(body);
    e
}

fn maria_gtid(seq: u64, log_pos: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    body.push(0); // not standalone: a transaction follows
    event(162, log_pos, &body)
}

fn decoder() -> StreamDecoder {
    let mut d = StreamDecoder::offline(DecoderOptions::default());
    d.set_file("binlog.000009", 4);
    d
}

#[test]
fn unknown_event_inside_a_transaction_stops_with_its_position() {
    let mut d = decoder();
    let mut emitted = 0;
    let gtid = maria_gtid(5, 200);
    d.feed(&gtid, &mut |_| {
        emitted += 1;
        Ok(())
    })
    .expect("gtid");
    let unknown = event(
        99,
        260,
        &[
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
            25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41,
        ],
    );
    let err = d.feed(&unknown, &mut |_| Ok(())).expect_err("must stop");
    match &err {
        CaptureError::Decode { pos, reason, .. } => {
            assert_eq!(pos.to_string(), "binlog.000009:200");
            assert!(reason.contains("unknown event type 99"), "{reason}");
        }
        other => panic!("a decode error expected, got {other}"),
    }
    assert_eq!(emitted, 0, "nothing of the transaction was emitted");
}

#[test]
fn encrypted_binlog_and_incident_are_refused() {
    let mut d = decoder();
    let err = d
        .feed(
            &event(
                164,
                100,
                &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
            &mut |_| Ok(()),
        )
        .expect_err("encrypted");
    assert!(err.to_string().contains("encrypt_binlog"), "{err}");
    let mut d = decoder();
    let err = d
        .feed(&event(26, 100, &[1, 0, 0]), &mut |_| Ok(()))
        .expect_err("incident");
    assert!(err.to_string().contains("INCIDENT"), "{err}");
}

#[test]
fn an_ignorable_unknown_event_is_skipped_outside_transactions() {
    let mut d = decoder();
    let mut e = event(120, 100, &[0; 8]);
    e[17] = 0x80; // LOG_EVENT_IGNORABLE_F
    d.feed(&e, &mut |_| Ok(()))
        .expect("the server says it may be skipped");
}
