//! `/metrics`: the libraries' OpenTelemetry instruments in Prometheus text, through the
//! OpenTelemetry Prometheus exporter.

use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, TextEncoder};

use super::error::{RunError, chain};

/// The registry the exporter fills and `/metrics` reads.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: prometheus::Registry,
}

impl Metrics {
    /// Installs the exporter as the global meter provider: call before any component is built,
    /// since components take their instruments when they are made.
    pub fn install() -> Result<(Self, SdkMeterProvider), RunError> {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_scope_info()
            .build()
            .map_err(|error| RunError::Api(format!("metrics exporter: {}", chain(&error))))?;
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        opentelemetry::global::set_meter_provider(provider.clone());
        Ok((Self { registry }, provider))
    }

    /// The current figures, in Prometheus text format.
    pub fn render(&self) -> Result<String, String> {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .map_err(|error| error.to_string())?;
        String::from_utf8(buffer).map_err(|error| error.to_string())
    }
}
