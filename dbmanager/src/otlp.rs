//! OTLP export of the manager's spans (feature `otlp`): an OpenTelemetry tracer provider
//! that sends spans over OTLP/HTTP (protobuf) to a collector, and the `tracing` layer that
//! feeds it. The spans are those of docs/tracing.md, from connections with
//! `enable_tracing: true`.
//!
//! ```no_run
//! use dbmanager::otlp;
//! use tracing_subscriber::layer::SubscriberExt;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = otlp::tracer_provider("http://127.0.0.1:4318/v1/traces", "orders-api")?;
//! let subscriber = tracing_subscriber::registry().with(otlp::layer(&provider));
//! tracing::subscriber::set_global_default(subscriber)?;
//! // ... run the service ...
//! provider.shutdown()?; // flushes what is still queued
//! # Ok(()) }
//! ```
//!
//! The exporter is opentelemetry-otlp's HTTP exporter with its blocking reqwest client
//! (it runs on the batch processor's own thread, outside any runtime), over plain HTTP:
//! the usual target is a collector on the same host or pod. The `OTEL_EXPORTER_OTLP_*`
//! environment variables it reads (headers, timeout, compression) apply; an endpoint
//! given here wins over `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{ExporterBuildError, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{Filtered, LevelFilter, Targets};

pub use opentelemetry;
pub use opentelemetry_otlp;
pub use opentelemetry_sdk;
pub use tracing_opentelemetry;

/// A tracer provider that batches spans and exports them to `endpoint` (the full traces
/// URL, `http://HOST:4318/v1/traces`), with `service.name` = `service_name`. Call
/// [`SdkTracerProvider::shutdown`] before the process exits, or queued spans are lost.
pub fn tracer_provider(
    endpoint: &str,
    service_name: &str,
) -> Result<SdkTracerProvider, ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_attribute(KeyValue::new("service.name", service_name.to_owned()))
                .build(),
        )
        .build())
}

/// The crates the exporter itself runs on: their spans are never exported, or each export
/// would trace itself into the next one.
const EXPORTER_CRATES: [&str; 7] = [
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "tower",
    "opentelemetry",
    "opentelemetry_sdk",
];

/// The `tracing` layer that turns spans into OpenTelemetry spans of `provider`'s tracer
/// (instrumentation scope `dbmanager`): the manager's spans and the service's own (so a
/// request's span is the parent of the acquire it waits on), but not those of the HTTP
/// stack the exporter runs on.
pub fn layer<S>(provider: &SdkTracerProvider) -> Filtered<OpenTelemetryLayer<S, Tracer>, Targets, S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let targets = EXPORTER_CRATES.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, krate| t.with_target(*krate, LevelFilter::OFF),
    );
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("dbmanager"))
        .with_filter(targets)
}
