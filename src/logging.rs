//! Logs through `tracing` to standard error, as text for people or JSON
//! lines for log collectors, filtered by the configured `log_level`.
//! Standard output stays for the faces' answers (`status --json`, `du`).

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `log_level` is not a filter directive (the config checks it first).
    #[error("log_level {level:?}: not a log filter: {source}")]
    Filter {
        /// The directive.
        level: String,
        /// What the parser said.
        source: tracing_subscriber::filter::ParseError,
    },
    /// Another logger was installed first.
    #[error("cannot install the logger: {0}")]
    Install(#[from] tracing_subscriber::util::TryInitError),
}

/// Installs the process-wide logger writing to standard error (colored
/// only on a terminal, unless `NO_COLOR` is set).
pub fn init(settings: &LogSettings) -> Result<(), LoggingError> {
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    subscriber(settings, std::io::stderr, ansi)?.try_init()?;
    Ok(())
}

/// The logger `init` installs, writing to `writer`.
pub fn subscriber<W>(
    settings: &LogSettings,
    writer: W,
    ansi: bool,
) -> Result<Box<dyn Subscriber + Send + Sync>, LoggingError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::builder()
        .parse(&settings.level)
        .map_err(|source| LoggingError::Filter {
            level: settings.level.clone(),
            source,
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    Ok(match settings.format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer that keeps what it is given.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Logs one event per level from `target` and returns the output.
    fn log_with(format: LogFormat, level: &str) -> String {
        let settings = LogSettings {
            format,
            level: level.to_string(),
        };
        let captured = Captured::default();
        let writer = captured.clone();
        let sub = subscriber(&settings, move || writer.clone(), false).unwrap();
        tracing::subscriber::with_default(sub, || {
            tracing::debug!(target: "headroom::agent", "debug from headroom");
            tracing::info!(target: "headroom::agent", walks = 2, "info from headroom");
            tracing::debug!(target: "h2", "debug from h2");
            tracing::warn!(target: "h2", "warn from h2");
        });
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_lines_carry_level_target_message_and_fields() {
        let out = log_with(LogFormat::Json, "info");
        let events: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 2, "{out}");
        assert_eq!(events[0]["level"], "INFO");
        assert_eq!(events[0]["target"], "headroom::agent");
        assert_eq!(events[0]["message"], "info from headroom");
        assert_eq!(events[0]["walks"], 2);
        assert_eq!(events[1]["level"], "WARN");
        assert!(events[0]["timestamp"].is_string());
    }

    #[test]
    fn text_lines_follow_the_filter_directive() {
        let out = log_with(LogFormat::Text, "warn,headroom=debug");
        assert!(out.contains("debug from headroom"), "{out}");
        assert!(out.contains("info from headroom"), "{out}");
        assert!(out.contains("warn from h2"), "{out}");
        assert!(!out.contains("debug from h2"), "{out}");
        assert!(!out.contains('\u{1b}'), "no color when not asked: {out}");
        assert!(serde_json::from_str::<serde_json::Value>(out.lines().next().unwrap()).is_err());
    }

    #[test]
    fn a_bad_directive_is_an_error_naming_it() {
        let settings = LogSettings {
            format: LogFormat::Text,
            level: "headroom=loud".to_string(),
        };
        let err = subscriber(&settings, std::io::sink, false).err().unwrap();
        assert!(err
            .to_string()
            .starts_with("log_level \"headroom=loud\": not a log filter"));
    }
}
