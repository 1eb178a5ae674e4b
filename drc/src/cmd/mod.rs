//! One module per subcommand.

pub mod capture;
