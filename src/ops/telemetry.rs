//! Logs and traces. Log lines go through `tracing`, filtered by `RUST_LOG` (default
//! `info`), as text or JSON, written to stdout by a background thread so that a slow
//! terminal or pipe never holds up a request. W3C trace context (`traceparent`,
//! `tracestate`) is read from HTTP requests and gRPC calls, recorded as `trace.id`,
//! and passed on to the gRPC service; with `--otlp-endpoint`, spans are exported
//! over OTLP/HTTP as well.

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::{
    Context,
    propagation::{Extractor, Injector, TextMapPropagator as _},
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    EnvFilter, Layer as _,
    fmt::{format::Writer, time::FormatTime},
    layer::SubscriberExt as _,
    util::SubscriberInitExt as _,
};

use crate::config::{LogFormat, Switch};

/// The log target of access-log lines (`RUST_LOG=access=off` silences them too).
pub const ACCESS_LOG: &str = "access";

/// Keeps logging and trace export running; dropping it flushes both.
pub struct Telemetry {
    _writer: super::log_writer::LogWriterGuard,
    tracer: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(tracer) = self.tracer.take()
            && let Err(e) = tracer.shutdown()
        {
            eprintln!("trace export did not shut down cleanly: {e}");
        }
    }
}

/// Installs the global subscriber. Call once, from `main`, before the runtime starts
/// (the OTLP exporter's blocking client must not be created inside it).
///
/// # Errors
/// When the OTLP endpoint is invalid or a subscriber is already installed.
pub fn init(
    format: LogFormat,
    access_log: Switch,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<Telemetry> {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    if access_log == Switch::Off {
        filter = filter.add_directive(format!("{ACCESS_LOG}=off").parse()?);
    }
    // Lines are buffered for a writer thread; if it falls far behind, lines are
    // dropped rather than requests held up.
    let (writer, guard) =
        super::log_writer::start(std::io::stdout()).context("cannot start the log writer")?;
    let lines = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_timer(UtcMicros)
            .with_writer(writer)
            // Plain text, on a terminal too: colors cost per field on every line.
            .with_ansi(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_timer(UtcMicros)
            .with_writer(writer)
            .boxed(),
    };
    let tracer = otlp_endpoint.map(tracer_provider).transpose()?;
    let spans = tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer("entitlement-gateway"))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(spans)
        .try_init()
        .context("a log subscriber is already installed")?;
    Ok(Telemetry {
        _writer: guard,
        tracer,
    })
}

/// Line timestamps as tracing-subscriber's default writes them (RFC 3339, UTC, to
/// the microsecond: `2026-11-29T06:14:52.047614Z`), but with the date and the time
/// of day formatted once a second on each thread instead of for every line: an
/// access line per request made that formatting a measurable share of its cost.
struct UtcMicros;

impl FormatTime for UtcMicros {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        write_utc_micros(now, w)
    }
}

/// Writes the instant `since_epoch` (after the Unix epoch) as [`UtcMicros`] does.
fn write_utc_micros(since_epoch: Duration, w: &mut impl std::fmt::Write) -> std::fmt::Result {
    thread_local! {
        /// The second last formatted on this thread, and its text up to the '.'.
        static SECOND: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    SECOND.with_borrow_mut(|(second, prefix)| {
        if *second != since_epoch.as_secs() {
            let at = i64::try_from(since_epoch.as_secs())
                .ok()
                .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
                .ok_or(std::fmt::Error)?;
            *prefix = at
                .format(time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second]."
                ))
                .map_err(|_| std::fmt::Error)?;
            *second = since_epoch.as_secs();
        }
        w.write_str(prefix)?;
        let mut fraction = *b"000000Z";
        let mut micros = since_epoch.subsec_micros();
        for digit in fraction[..6].iter_mut().rev() {
            // A digit: below 10, so it fits a u8.
            *digit = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        w.write_str(std::str::from_utf8(&fraction).map_err(|_| std::fmt::Error)?)
    })
}

/// Spans exported in batches to an OTLP/HTTP collector at `endpoint` (traces go to
/// `/v1/traces` under it unless it names a path).
fn tracer_provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let uri: http::Uri = endpoint
        .parse()
        .with_context(|| format!("invalid --otlp-endpoint {endpoint:?}"))?;
    let endpoint = match uri.path() {
        "" | "/" => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint.to_owned(),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .context("cannot set up the OTLP exporter")?;
    Ok(SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name("entitlement-gateway")
                .build(),
        )
        .with_batch_exporter(exporter)
        .build())
}

/// The W3C trace context a request or call carries; empty when it has none (or a
/// malformed one).
pub fn extract(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderReader(headers))
}

/// Makes `span` a child of `parent` (for export) and records its `trace.id`: the
/// exported trace's when spans are exported, else the caller's. Returns that id.
pub fn adopt(span: &tracing::Span, parent: &Context) -> Option<opentelemetry::trace::TraceId> {
    // Only fails when no OpenTelemetry layer is installed: nothing to adopt then.
    let _ = span.set_parent(parent.clone());
    let own = span.context();
    let trace_id = trace_id(exported_or(&own, parent));
    if let Some(trace_id) = trace_id {
        span.record("trace.id", tracing::field::display(trace_id));
    }
    trace_id
}

/// The trace id of `context`, when it has a valid one.
pub fn trace_id(context: &Context) -> Option<opentelemetry::trace::TraceId> {
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| span_context.trace_id())
}

/// Adds `traceparent` (and `tracestate`) to an outgoing gRPC call: the current
/// span's when spans are exported (so the service's span is its child), else the
/// caller's `parent` unchanged.
pub fn inject(parent: &Context, metadata: &mut tonic::metadata::MetadataMap) {
    let own = tracing::Span::current().context();
    TraceContextPropagator::new()
        .inject_context(exported_or(&own, parent), &mut MetadataWriter(metadata));
}

/// A span's own context when spans are exported (it is valid then), else the
/// caller's.
fn exported_or<'a>(own: &'a Context, parent: &'a Context) -> &'a Context {
    if own.span().span_context().is_valid() {
        own
    } else {
        parent
    }
}

struct HeaderReader<'a>(&'a http::HeaderMap);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct MetadataWriter<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataWriter<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::AsciiMetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::write_utc_micros;

    fn written(since_epoch: Duration) -> String {
        let mut text = String::new();
        write_utc_micros(since_epoch, &mut text).unwrap();
        text
    }

    #[test]
    fn timestamps_are_rfc3339_utc_to_the_microsecond() {
        let second = Duration::from_secs(1_795_933_092);
        assert_eq!(written(second), "2026-11-29T06:18:12.000000Z");
        // The same second again: the cached date and time of day, a new fraction.
        assert_eq!(
            written(second + Duration::from_nanos(47_614_999)),
            "2026-11-29T06:18:12.047614Z"
        );
        // The next second, and the next day.
        assert_eq!(
            written(second + Duration::from_micros(1_000_001)),
            "2026-11-29T06:18:13.000001Z"
        );
        assert_eq!(
            written(Duration::from_secs(1_795_996_799) + Duration::from_micros(999_999)),
            "2026-11-29T23:59:59.999999Z"
        );
        assert_eq!(
            written(Duration::from_secs(1_795_996_800)),
            "2026-11-30T00:00:00.000000Z"
        );
    }
}
