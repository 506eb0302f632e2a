//! OpenTelemetry trace export, configured by the standard `OTEL_*` variables: on when an OTLP
//! endpoint is set, off (nothing installed) otherwise. The SDK itself reads the rest of the
//! standard set (sampler, batch processor, headers, timeout, resource attributes).

use super::Reader;
use crate::telemetry::traces::{DEFAULT_SERVICE_NAME, OtlpProtocol, TracesConfig};

impl Reader<'_> {
    /// Trace export, `None` when no OTLP endpoint is set or `OTEL_SDK_DISABLED=true`.
    pub(super) fn traces(&mut self) -> Option<TracesConfig> {
        if self.flag("OTEL_SDK_DISABLED", false) {
            return None;
        }
        let (var, raw, signal_specific) = match self.raw("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(raw) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raw.to_owned(), true),
            None => (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                self.raw("OTEL_EXPORTER_OTLP_ENDPOINT")?.to_owned(),
                false,
            ),
        };
        let protocol = self.otlp_protocol();
        if !(raw.starts_with("http://") || raw.starts_with("https://")) {
            self.problem(var, "must be a URL starting with http:// or https://");
        } else if protocol == OtlpProtocol::Grpc && raw.starts_with("https://") {
            self.problem(
                var,
                "gRPC export over TLS is not built in; use http/protobuf \
                 (OTEL_EXPORTER_OTLP_PROTOCOL) or a collector on a plain-text address",
            );
        }
        let endpoint = match protocol {
            OtlpProtocol::HttpProtobuf if !signal_specific => {
                format!("{}/v1/traces", raw.trim_end_matches('/'))
            }
            _ => raw,
        };
        Some(TracesConfig {
            endpoint,
            protocol,
            service_name: self.service_name(),
        })
    }

    fn otlp_protocol(&mut self) -> OtlpProtocol {
        let var = match self.raw("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
            Some(_) => "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            None => "OTEL_EXPORTER_OTLP_PROTOCOL",
        };
        match self.raw(var) {
            None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some("grpc") => OtlpProtocol::Grpc,
            Some(other) => {
                let message = format!("{other:?} is not supported; use grpc or http/protobuf");
                self.problem(var, message);
                OtlpProtocol::HttpProtobuf
            }
        }
    }

    fn service_name(&self) -> String {
        if let Some(name) = self.raw("OTEL_SERVICE_NAME") {
            return name.to_owned();
        }
        self.raw("OTEL_RESOURCE_ATTRIBUTES")
            .into_iter()
            .flat_map(|attrs| attrs.split(','))
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| key.trim() == "service.name")
            .map(|(_, value)| value.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Config;

    fn traces(pairs: &[(&str, &str)]) -> Result<Option<TracesConfig>, String> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(&vars)
            .map(|c| c.traces)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn off_without_an_endpoint_or_when_the_sdk_is_disabled() {
        assert_eq!(traces(&[]).unwrap(), None);
        assert_eq!(traces(&[("OTEL_SERVICE_NAME", "x")]).unwrap(), None);
        let disabled = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ];
        assert_eq!(traces(&disabled).unwrap(), None);
    }

    #[test]
    fn endpoints_follow_the_spec_per_protocol() {
        let t = traces(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")])
            .unwrap()
            .unwrap();
        assert_eq!(t.protocol, OtlpProtocol::HttpProtobuf, "the spec's default");
        assert_eq!(t.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(t.service_name, DEFAULT_SERVICE_NAME);

        let t = traces(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://other:9000/traces",
            ),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            t.endpoint, "http://other:9000/traces",
            "signal-specific: as given"
        );

        let t = traces(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (t.protocol, t.endpoint.as_str()),
            (OtlpProtocol::Grpc, "http://collector:4317")
        );
    }

    #[test]
    fn service_name_from_its_variable_then_the_resource_attributes() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        let attrs = (
            "OTEL_RESOURCE_ATTRIBUTES",
            "team=ai, service.name=from-attrs",
        );
        let named = traces(&[endpoint, attrs]).unwrap().unwrap();
        assert_eq!(named.service_name, "from-attrs");
        let named = traces(&[endpoint, attrs, ("OTEL_SERVICE_NAME", "svc")])
            .unwrap()
            .unwrap();
        assert_eq!(named.service_name, "svc");
    }

    #[test]
    fn bad_values_are_reported_with_the_others() {
        let err = traces(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ])
        .unwrap_err();
        assert!(err.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{err}");
        assert!(err.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{err}");
        let err = traces(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://c:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ])
        .unwrap_err();
        assert!(err.contains("TLS"), "{err}");
    }
}
