//! Decoding column values: exact numeric, temporal, JSON and text forms.

pub mod charset;
pub mod decimal;
pub mod json_binary;
pub mod json_diff;
pub mod plan;
pub mod temporal;
pub mod values;
