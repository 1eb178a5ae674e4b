//! Output formats of `drc capture`: JSON lines (the documented contract) and
//! `null` (decode, then discard: for benchmarks).

pub mod jsonl;
