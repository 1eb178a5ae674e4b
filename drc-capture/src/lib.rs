//! DRC capture: reads MySQL and MariaDB binlogs (live, as a replica, or from
//! files) and turns them into DRC's normalized stream of whole transactions.

pub mod assemble;
pub mod binlog;
pub mod capture;
pub mod checks;
pub mod decode;
pub mod decoder;
pub mod error;
pub mod filter;
pub mod origin;
pub mod output;
pub mod position;
pub mod schema;
