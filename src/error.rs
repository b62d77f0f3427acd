//! Typed errors that decide the exit code; everything else travels as `anyhow`.

use std::fmt;

/// Exit codes, as documented in the README.
pub mod exit {
    /// The run finished and a report was printed, whatever the verdict.
    pub const OK: i32 = 0;
    /// `--strict` and the verdict is FAIL.
    pub const FAIL: i32 = 1;
    /// Bad configuration: nothing was sent to the endpoint.
    pub const CONFIG: i32 = 2;
    /// The endpoint could not be used at all (unreachable, auth refused, model not found).
    pub const ENDPOINT: i32 = 3;
    /// Anything unexpected inside turnbench (for example results could not be written).
    pub const INTERNAL: i32 = 4;
    /// Stopped by SIGINT (128 + 2), after printing the partial report.
    pub const SIGINT: i32 = 130;
    /// Stopped by SIGTERM (128 + 15), after printing the partial report.
    pub const SIGTERM: i32 = 143;
}

/// A setting that cannot be used; the message names the flag, variable or file key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl ConfigError {
    pub fn new(msg: impl Into<String>) -> Self {
        ConfigError(msg.into())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The process exit code an error maps to.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.downcast_ref::<ConfigError>().is_some() {
        exit::CONFIG
    } else {
        exit::INTERNAL
    }
}
