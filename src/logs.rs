//! sam's log, human-readable or as JSON lines (`SAM_LOG_FORMAT`), and what `/metrics`
//! learns from it: how many warnings and errors were logged, and how GitHub answered the
//! calls octocrab made.

use std::io::IsTerminal;

use metrics::counter;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, fmt};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One readable line per event, for a terminal or journald.
    Human,
    /// One JSON object per line, with the spans the event happened in, for log collectors.
    Json,
}

impl Format {
    /// Reads `SAM_LOG_FORMAT`: `human` (the default) or `json`.
    pub fn parse(raw: Option<&str>) -> anyhow::Result<Self> {
        match raw
            .map(str::trim)
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "" | "human" => Ok(Format::Human),
            "json" => Ok(Format::Json),
            other => anyhow::bail!("SAM_LOG_FORMAT must be human or json, not {other:?}"),
        }
    }
}

/// Installs the log for the process, as `SAM_LOG` and `SAM_LOG_FORMAT` say (validated
/// with the rest of the configuration).
/// `serve` logs on standard output; the other commands print their results there, and log
/// on standard error so that the two stay apart.
pub fn init(settings: &crate::config::LogSettings, on_stderr: bool) -> anyhow::Result<()> {
    let mut filter = EnvFilter::builder().parse(&settings.filter)?;
    if !settings.filter.contains("sqlx") {
        // PostgreSQL's notices, like the "already exists, skipping" of every start's
        // migrations, tell an operator nothing to act on; a filter naming sqlx still shows
        // them.
        filter = filter.add_directive("sqlx::postgres::notice=warn".parse()?);
    }
    let (writer, terminal) = if on_stderr {
        (
            fmt::writer::BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        )
    } else {
        (
            fmt::writer::BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        )
    };
    // Colour codes only where someone reads them: not in a file, a pipe or journald, and
    // not when NO_COLOR (no-color.org) asks for none.
    let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let lines = match settings.format {
        Format::Human => fmt::layer().with_writer(writer).with_ansi(colour).boxed(),
        Format::Json => fmt::layer()
            .with_writer(writer)
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    // The counting layer sees warnings and errors from everywhere, and octocrab's request
    // spans, whatever `SAM_LOG` lets through to the lines.
    let counted = Targets::new()
        .with_target("octocrab", Level::DEBUG)
        .with_default(Level::WARN);
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(lines.with_filter(filter))
            .with(Counting.with_filter(counted)),
    )?;
    // Records of the `log` crate (sqlx and rustls write theirs through it) become events
    // from warnings up only. A record turned into an event that the lines' filter then
    // drops leaves that filter's state stale on its thread, and the next event there, a
    // warning of sam's included, was lost; below warnings, such records are chatter.
    tracing_log::LogTracer::builder()
        .with_max_level(tracing_log::log::LevelFilter::Warn)
        .init()?;
    Ok(())
}

/// Counts warnings and errors, and GitHub API calls by how they ended.
struct Counting;

/// The answer status of one of octocrab's requests, once it is known.
struct ApiCall {
    status: Option<u64>,
}

impl Visit for ApiCall {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "http.status_code" {
            self.status = Some(value);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

/// octocrab (with its `tracing` feature) wraps every request in a span named `HTTP`, and
/// records the answer's status in its `http.status_code` field: the one place where every
/// call sam makes through octocrab can be seen, answer and all.
fn is_api_call(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.name() == "HTTP" && metadata.target().starts_with("octocrab")
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Counting {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        // octocrab logs every failed call as an error, even one sam's retries then get
        // through; those calls are counted by outcome below, and what sam makes of them it
        // logs itself.
        if level <= Level::WARN && !event.metadata().target().starts_with("octocrab") {
            let level = if level == Level::ERROR {
                "error"
            } else {
                "warn"
            };
            counter!("sam_log_events_total", "level" => level).increment(1);
        }
    }

    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !is_api_call(attributes.metadata()) {
            return;
        }
        let mut call = ApiCall { status: None };
        attributes.record(&mut call);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(call);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(call) = span.extensions_mut().get_mut::<ApiCall>()
        {
            values.record(call);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(call) = span.extensions_mut().remove::<ApiCall>() else {
            return;
        };
        let outcome = match call.status {
            Some(100..400) => "success",
            Some(403 | 429) => "refused_or_limited",
            Some(400..500) => "client_error",
            Some(_) => "server_error",
            None => "no_answer",
        };
        counter!("sam_github_api_calls_total", "outcome" => outcome).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_formats_are_human_or_json() {
        assert_eq!(Format::parse(None).unwrap(), Format::Human);
        assert_eq!(Format::parse(Some("JSON")).unwrap(), Format::Json);
        assert_eq!(Format::parse(Some(" human ")).unwrap(), Format::Human);
        let error = Format::parse(Some("yaml")).unwrap_err().to_string();
        assert!(error.contains("SAM_LOG_FORMAT"), "{error}");
    }
}
