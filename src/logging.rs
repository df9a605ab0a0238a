//! Logging setup: `tracing` events written to standard error by
//! `tracing-subscriber`, as human-readable lines or one JSON object per line.
//!
//! The filter (`info`, `sealpost=debug,warn`, any `EnvFilter` directive list)
//! comes from, first to last: the `--log-level` flag, the `RUST_LOG`
//! environment variable, `[logging] level` in the configuration. The format
//! comes from `--log-format`, else `[logging] format`.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

use crate::policy::level::UnknownWord;

/// How log events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per event, for log shippers.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogFormat {
    type Err = UnknownWord;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(UnknownWord::new("log format", other, &["human", "json"])),
        }
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("bad log filter `{given}`: {reason}")]
    BadFilter { given: String, reason: String },
    #[error("a global logger is already installed")]
    AlreadyInstalled,
}

/// Checks an `EnvFilter` directive list without installing anything.
pub fn parse_filter(directives: &str) -> Result<EnvFilter, LoggingError> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|e| LoggingError::BadFilter {
            given: directives.to_owned(),
            reason: e.to_string(),
        })
}

/// The filter in force: the flag, else a non-empty `RUST_LOG`, else the configuration.
pub fn choose_filter<'a>(flag: Option<&'a str>, env: Option<&'a str>, config: &'a str) -> &'a str {
    flag.or(env.filter(|s| !s.trim().is_empty()))
        .unwrap_or(config)
}

/// Installs the global subscriber writing to standard error.
pub fn init(format: LogFormat, directives: &str) -> Result<(), LoggingError> {
    let filter = parse_filter(directives)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|_| LoggingError::AlreadyInstalled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_environment_beats_configuration() {
        let cases = [
            (Some("debug"), Some("warn"), "info", "debug"),
            (None, Some("warn"), "info", "warn"),
            (None, Some(" "), "info", "info"),
            (None, None, "info", "info"),
        ];
        for (flag, env, config, want) in cases {
            assert_eq!(choose_filter(flag, env, config), want);
        }
    }

    #[test]
    fn filters_and_formats_are_checked() {
        assert!(parse_filter("info").is_ok());
        assert!(parse_filter("sealpost=debug,warn").is_ok());
        assert!(parse_filter("sealpost=loud").is_err());
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
