//! OTLP/HTTP logs: `ExportLogsServiceRequest` as protobuf (`application/x-protobuf`) or as
//! OTLP JSON, on the standard path `/v1/logs`, beside tidemark's own JSON. An OTLP JSON body is
//! told from a tidemark event by its top-level `resourceLogs` key.
//!
//! Each LogRecord becomes one tidemark event, which then goes the way every event goes
//! (checked with the pipelines' decoder, routed, acknowledged by Kafka):
//!
//! | event field | from |
//! |---|---|
//! | the id field | the attribute `id_attribute` names (`log.record.uid` by default), else a UUIDv7 |
//! | the time field (epoch ms) | `timeUnixNano`, else `observedTimeUnixNano`, else the receive time |
//! | `timeUnixNano` | the nanoseconds the time came from, as a string, so nothing is lost |
//! | `service` | the resource attribute `service.name` (the sticky key without a token) |
//! | `resource`, `attributes` | the resource's and the record's attributes, as objects |
//! | `scope` | the instrumentation scope's name, when it has one |
//! | `severity`, `severityNumber` | `severityText`, `severityNumber` |
//! | `message` | a string body; any other body goes to `body`, as JSON |
//! | `traceId`, `spanId` | lowercase hex, when set |
//! | `eventName` | when set |
//!
//! The answer is OTLP's: `ExportLogsServiceResponse` in the request's encoding, with
//! `partialSuccess` counting the records not written and saying why.

use crate::event::EventFormat;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use serde_json::{Map, Value};

/// How an OTLP request is encoded; its answer is encoded the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// OTLP JSON (`application/json` with `resourceLogs`).
    Json,
}

impl Encoding {
    /// The `Content-Type` of the answer.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Whether a `Content-Type` is protobuf.
pub fn is_protobuf(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-protobuf"))
}

/// Whether a JSON body is an OTLP request: an object with a top-level `resourceLogs`. Only
/// bodies that mention the key are parsed to find out.
pub fn is_otlp_json(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "resourceLogs")]
        resource_logs: Option<serde::de::IgnoredAny>,
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    first == Some(&b'{')
        && body.windows(14).any(|w| w == b"\"resourceLogs\"")
        && serde_json::from_slice::<Probe>(body).is_ok_and(|p| p.resource_logs.is_some())
}

/// The request in `body`, or why it is not one (400).
pub fn decode(body: &[u8], encoding: Encoding) -> Result<ExportLogsServiceRequest, String> {
    match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(body)
            .map_err(|e| format!("not an OTLP ExportLogsServiceRequest (protobuf): {e}")),
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|e| format!("not an OTLP ExportLogsServiceRequest (JSON): {e}")),
    }
}

/// `google.rpc.Status`, the body OTLP/HTTP gives every 4xx and 5xx answer. It is googleapis'
/// message, not OTLP's, so opentelemetry-proto does not carry it; `details` (field 3) is left out.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The gRPC code of an HTTP error status, as gRPC's own HTTP mapping pairs them.
pub fn grpc_code(status: u16) -> i32 {
    match status {
        400 | 413 | 415 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        404 => 5,             // NOT_FOUND
        405 => 12,            // UNIMPLEMENTED
        408 => 4,             // DEADLINE_EXCEEDED
        429 => 8,             // RESOURCE_EXHAUSTED
        503 => 14,            // UNAVAILABLE
        500 => 13,            // INTERNAL
        _ => 2,               // UNKNOWN
    }
}

/// The answer: `rejected` records not written, and why.
pub fn answer(encoding: Encoding, rejected: usize, message: String) -> Vec<u8> {
    let response = ExportLogsServiceResponse {
        partial_success: (rejected > 0 || !message.is_empty()).then_some(
            ExportLogsPartialSuccess {
                rejected_log_records: rejected as i64,
                error_message: message,
            },
        ),
    };
    match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

/// An OTLP value as JSON. Bytes are lowercase hex, as OTLP's ids are.
fn json_of(value: &AnyValue) -> Value {
    match &value.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
        }
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(json_of).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(object_of(&kv.values)),
        Some(any_value::Value::BytesValue(b)) => Value::String(hex(b)),
        // A reference into a dictionary this request format does not carry.
        Some(_) => Value::Null,
    }
}

fn object_of(attributes: &[KeyValue]) -> Map<String, Value> {
    attributes
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map_or(Value::Null, json_of),
            )
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every LogRecord of `request` as an event object, in order. `id_attribute` names the record
/// attribute that holds an id (a string); the id field is left out when it has none, so the
/// gateway makes one (UUIDv7), as it does for any event.
pub fn events(
    request: &ExportLogsServiceRequest,
    format: &EventFormat,
    id_attribute: &str,
) -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    for resource_logs in &request.resource_logs {
        let resource = resource_logs
            .resource
            .as_ref()
            .map(|r| object_of(&r.attributes))
            .unwrap_or_default();
        let service = resource
            .get("service.name")
            .and_then(Value::as_str)
            .map(str::to_string);
        for scope_logs in &resource_logs.scope_logs {
            let scope = scope_logs
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .filter(|n| !n.is_empty());
            for record in &scope_logs.log_records {
                let mut e = Map::new();
                let attributes = object_of(&record.attributes);
                if let Some(Value::String(id)) = attributes.get(id_attribute) {
                    e.insert(format.id_field.clone(), Value::String(id.clone()));
                }
                let nanos = [record.time_unix_nano, record.observed_time_unix_nano]
                    .into_iter()
                    .find(|&t| t > 0);
                if let Some(ns) = nanos {
                    e.insert(format.time_field.clone(), Value::from(ns / 1_000_000));
                    e.insert("timeUnixNano".into(), Value::String(ns.to_string()));
                }
                if let Some(s) = &service {
                    e.insert("service".into(), Value::String(s.clone()));
                }
                if let Some(s) = &scope {
                    e.insert("scope".into(), Value::String(s.clone()));
                }
                if !record.severity_text.is_empty() {
                    e.insert(
                        "severity".into(),
                        Value::String(record.severity_text.clone()),
                    );
                }
                if record.severity_number != 0 {
                    e.insert("severityNumber".into(), Value::from(record.severity_number));
                }
                match record.body.as_ref().map(json_of) {
                    Some(Value::String(s)) => {
                        e.insert("message".into(), Value::String(s));
                    }
                    Some(Value::Null) | None => {}
                    Some(other) => {
                        e.insert("body".into(), other);
                    }
                }
                if !record.trace_id.is_empty() {
                    e.insert("traceId".into(), Value::String(hex(&record.trace_id)));
                }
                if !record.span_id.is_empty() {
                    e.insert("spanId".into(), Value::String(hex(&record.span_id)));
                }
                if !record.event_name.is_empty() {
                    e.insert("eventName".into(), Value::String(record.event_name.clone()));
                }
                if !resource.is_empty() {
                    e.insert("resource".into(), Value::Object(resource.clone()));
                }
                if !attributes.is_empty() {
                    e.insert("attributes".into(), Value::Object(attributes));
                }
                out.push(e);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn request() -> ExportLogsServiceRequest {
        let s = |v: &str| any_value::Value::StringValue(v.into());
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s("checkout")), kv("host.name", s("h1"))],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app".into(),
                        ..Default::default()
                    }),
                    log_records: vec![
                        LogRecord {
                            time_unix_nano: 1_764_000_000_123_456_789,
                            severity_number: 9,
                            severity_text: "INFO".into(),
                            body: Some(AnyValue {
                                value: Some(s("paid")),
                            }),
                            attributes: vec![
                                kv("log.record.uid", s("rec-1")),
                                kv("n", any_value::Value::IntValue(3)),
                            ],
                            trace_id: vec![0xab; 16],
                            span_id: vec![0x01; 8],
                            ..Default::default()
                        },
                        LogRecord {
                            observed_time_unix_nano: 1_764_000_001_000_000_000,
                            body: Some(AnyValue {
                                value: Some(any_value::Value::ArrayValue(ArrayValue {
                                    values: vec![AnyValue {
                                        value: Some(s("x")),
                                    }],
                                })),
                            }),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn records_map_to_events() {
        let format = EventFormat::default();
        let events = events(&request(), &format, "log.record.uid");
        assert_eq!(events.len(), 2);
        let a = Value::Object(events[0].clone());
        assert_eq!(a[&format.id_field], "rec-1");
        assert_eq!(a[&format.time_field], 1_764_000_000_123u64);
        assert_eq!(a["timeUnixNano"], "1764000000123456789");
        assert_eq!(a["service"], "checkout");
        assert_eq!(a["resource"]["host.name"], "h1");
        assert_eq!(a["attributes"]["n"], 3);
        assert_eq!(
            (a["severity"].clone(), a["severityNumber"].clone()),
            ("INFO".into(), 9.into())
        );
        assert_eq!(a["message"], "paid");
        assert_eq!(a["traceId"], "ab".repeat(16));
        assert_eq!(a["spanId"], "01".repeat(8));
        assert_eq!(a["scope"], "app");
        // No id attribute: no id field (the gateway makes one); the observed time stands in.
        let b = Value::Object(events[1].clone());
        assert!(b.get(&format.id_field).is_none());
        assert_eq!(b[&format.time_field], 1_764_000_001_000u64);
        assert_eq!(b["body"], serde_json::json!(["x"]));
    }

    #[test]
    fn both_encodings_decode_and_are_told_apart() {
        let r = request();
        let proto = r.encode_to_vec();
        assert_eq!(decode(&proto, Encoding::Protobuf).unwrap(), r);
        let json = serde_json::to_vec(&r).unwrap();
        assert!(is_otlp_json(&json), "{}", String::from_utf8_lossy(&json));
        assert_eq!(decode(&json, Encoding::Json).unwrap(), r);
        // A tidemark event, even one that mentions the key in a value, is not OTLP.
        assert!(!is_otlp_json(
            br#"{"eventId":"a","message":"\"resourceLogs\""}"#
        ));
        assert!(!is_otlp_json(br#"[{"resourceLogs":1}]"#));
        // Malformed protobuf is an error, never a panic.
        for bad in [
            &b"\xff\xff\xff\xff"[..],
            b"\x0a\x05abc",
            b"garbage that is not protobuf",
        ] {
            assert!(decode(bad, Encoding::Protobuf).is_err());
        }
        let ok = ExportLogsServiceResponse::decode(&answer(Encoding::Protobuf, 2, "x".into())[..])
            .unwrap();
        assert_eq!(ok.partial_success.unwrap().rejected_log_records, 2);
        let json: Value =
            serde_json::from_slice(&answer(Encoding::Json, 0, String::new())).unwrap();
        assert!(
            json.get("partialSuccess").is_none_or(Value::is_null),
            "{json}"
        );
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    /// OTLP JSON as the specification writes it (64-bit integers as strings, ids in hex,
    /// enums as numbers), not as this crate would serialize it.
    #[test]
    fn the_specifications_json_decodes() {
        let body = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
          "scopeLogs":[{"scope":{"name":"my.library","version":"1.0.0"},
          "logRecords":[{"timeUnixNano":"1544712660300000000","observedTimeUnixNano":"1544712660300000000",
            "severityNumber":10,"severityText":"Information","traceId":"5b8efff798038103d269b633813fc60c",
            "spanId":"eee19b7ec3c1b174","body":{"stringValue":"Example log record"},
            "attributes":[{"key":"string.attribute","value":{"stringValue":"some string"}},
              {"key":"int.attribute","value":{"intValue":"10"}},
              {"key":"double.attribute","value":{"doubleValue":637.704}}]}]}]}]}"#;
        assert!(is_otlp_json(body));
        let request = decode(body, Encoding::Json).unwrap();
        let events = events(&request, &EventFormat::default(), "log.record.uid");
        let e = Value::Object(events[0].clone());
        assert_eq!(e["timeUnixNano"], "1544712660300000000");
        assert_eq!(e["service"], "my.service");
        assert_eq!(e["traceId"], "5b8efff798038103d269b633813fc60c");
        assert_eq!(e["spanId"], "eee19b7ec3c1b174");
        assert_eq!(e["attributes"]["int.attribute"], 10);
        assert_eq!(e["message"], "Example log record");
        assert_eq!(e["severityNumber"], 10);
    }
}
