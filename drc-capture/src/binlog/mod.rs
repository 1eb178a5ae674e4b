//! The binlog: event framing and decoding, the replication connection, and
//! offline binlog files.

pub mod cursor;
pub mod event;
pub mod events;
pub mod file;
pub mod protocol;
pub mod rows;
pub mod table_map;
