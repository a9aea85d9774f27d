//! Gateway files (`tidemark gateway --config FILE`): where the gateway listens, its local region,
//! and one Kafka cluster per region, named by the region.
//!
//! ```toml
//! [gateway]
//! listen = "127.0.0.1:8080"
//! local_region = "region-a"
//!
//! [clusters.region-a]
//! bootstrap = "127.0.0.1:19092"
//!
//! [clusters.region-b]
//! bootstrap = "127.0.0.1:29092"
//! ```

use super::{cluster_node, named};
use crate::component::{deserialize, ConfigError, Millis};
use crate::event::EventFormat;
use crate::kafka::ClusterConfig;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A whole gateway file.
#[derive(Debug, Clone)]
pub struct GatewayFile {
    /// `[gateway]`.
    pub gateway: GatewayConfig,
    /// `[event]`: the same event shape the pipelines read.
    pub event: EventFormat,
    /// `[clusters.REGION]`: one Kafka cluster per region.
    pub clusters: BTreeMap<String, ClusterConfig>,
}

/// `[gateway]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// HTTP listen address.
    #[serde(default = "default_listen")]
    pub listen: std::net::SocketAddr,
    /// The region used when a request names none (a key of `[clusters]`).
    pub local_region: String,
    /// Topic events are written to in every region.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Largest request body accepted (413 above it), after decompression for a compressed one.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Time to receive a request's head, from its first byte (for a connection's first request,
    /// from the connection): a client that trickles its headers is cut after it.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: Millis,
    /// Time to receive a request's body, from its head (408 after it).
    #[serde(default = "default_body_timeout")]
    pub body_timeout: Millis,
    /// A kept-alive connection with no request for this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Millis,
    /// Connections held at most; one more is answered 503 and closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// A send not acknowledged within this goes to the other region.
    #[serde(default = "default_send_timeout")]
    pub send_timeout: Millis,
    /// How often each region's cluster is probed.
    #[serde(default = "default_probe_interval")]
    pub probe_interval: Millis,
    /// A metadata probe slower than this marks the region unhealthy.
    #[serde(default = "default_probe_timeout")]
    pub probe_timeout: Millis,
    /// Sticky producers go back to their region once it has been healthy this long.
    #[serde(default = "default_return_after")]
    pub return_after: Millis,
    /// Events in flight to Kafka at most; a request that would exceed it gets 503.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// `Retry-After` on a 503.
    #[serde(default = "default_retry_after")]
    pub retry_after: Millis,
    /// How long a graceful shutdown waits for requests in flight.
    #[serde(default = "default_drain")]
    pub shutdown_grace: Millis,
    /// `[gateway.tls]`: serve HTTPS.
    #[serde(default)]
    pub tls: Option<GatewayTls>,
    /// `tokens` (the default): every `POST /v1/logs` carries `Authorization: Bearer TOKEN`
    /// of `token_file`. `none`: anyone who reaches the port may write, for local use.
    #[serde(default)]
    pub auth: Auth,
    /// The token file (`tidemark gateway token add`), with `auth = "tokens"`.
    #[serde(default)]
    pub token_file: Option<std::path::PathBuf>,
    /// OTLP logs: the record attribute that holds an event's id (a string). Records without
    /// it get a UUIDv7.
    #[serde(default = "default_otlp_id_attribute")]
    pub otlp_id_attribute: String,
    /// Events in flight at most for one API token, so that one producer cannot take all of
    /// `max_in_flight` from the others: over it, 429. Default: a quarter of `max_in_flight`.
    #[serde(default)]
    pub token_max_in_flight: Option<u32>,
}

impl GatewayConfig {
    /// `token_max_in_flight`, or its default.
    pub fn token_in_flight_cap(&self) -> usize {
        self.token_max_in_flight
            .map_or((self.max_in_flight / 4).max(1), |n| n) as usize
    }
}

/// Who may write (`[gateway] auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    /// API tokens of `token_file`.
    #[default]
    Tokens,
    /// Nobody is asked.
    None,
}

/// `[gateway.tls]`: the listener speaks TLS. Paths are relative to where the gateway runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayTls {
    /// PEM: the server's certificate, then its chain. Reloaded when it changes on disk.
    pub cert: std::path::PathBuf,
    /// PEM: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
    /// PEM: the CA clients' certificates must be signed by (mutual TLS). Without it, clients
    /// show none.
    #[serde(default)]
    pub client_ca: Option<std::path::PathBuf>,
}

fn default_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_topic() -> String {
    "log-events".into()
}
fn default_max_body() -> u64 {
    8 << 20
}
fn default_otlp_id_attribute() -> String {
    // OpenTelemetry's semantic convention for a log record's unique id.
    "log.record.uid".into()
}
fn default_header_timeout() -> Millis {
    Millis(10_000)
}
fn default_body_timeout() -> Millis {
    Millis(30_000)
}
fn default_idle_timeout() -> Millis {
    Millis(60_000)
}
fn default_max_connections() -> u32 {
    1024
}
fn default_send_timeout() -> Millis {
    Millis(3_000)
}
fn default_probe_interval() -> Millis {
    Millis(1_000)
}
fn default_probe_timeout() -> Millis {
    Millis(1_000)
}
fn default_return_after() -> Millis {
    Millis(10_000)
}
fn default_max_in_flight() -> u32 {
    100_000
}
fn default_retry_after() -> Millis {
    Millis(1_000)
}
fn default_drain() -> Millis {
    Millis(30_000)
}

/// Parses and checks a gateway file, returning every error found.
pub fn parse_gateway(text: &str) -> Result<GatewayFile, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let root = super::toml_root(text)?;
    let mut gateway = None;
    let mut event = EventFormat::default();
    let mut clusters = BTreeMap::new();
    for (key, value) in root {
        match key.as_str() {
            "gateway" => gateway = deserialize::<GatewayConfig>("gateway", value, &mut errors),
            "event" => {
                if let Some(v) = deserialize::<EventFormat>("event", value, &mut errors) {
                    event = v;
                }
            }
            "clusters" => clusters = named("clusters", value, &mut errors, cluster_node),
            other => errors.push(ConfigError {
                node: other.into(),
                field: String::new(),
                message: "unknown section (expected gateway, event, clusters)".into(),
            }),
        }
    }
    let mut err = |field: &str, message: String| {
        errors.push(ConfigError {
            node: "gateway".into(),
            field: field.into(),
            message,
        })
    };
    if clusters.len() != 2 {
        err(
            "",
            format!(
                "needs exactly two [clusters.REGION] entries (one per region), found {}",
                clusters.len()
            ),
        );
    }
    let Some(g) = gateway else {
        if !errors
            .iter()
            .any(|e| e.node == "gateway" && e.field.is_empty())
        {
            errors.push(ConfigError {
                node: "gateway".into(),
                field: String::new(),
                message: "missing section [gateway]".into(),
            });
        }
        return Err(errors);
    };
    let mut err = |field: &str, message: String| {
        errors.push(ConfigError {
            node: "gateway".into(),
            field: field.into(),
            message,
        })
    };
    if !clusters.contains_key(&g.local_region) {
        err(
            "local_region",
            format!("\"{}\" is not one of [clusters]", g.local_region),
        );
    }
    if g.topic.trim().is_empty() {
        err("topic", "must not be empty".into());
    }
    for (field, v) in [
        ("send_timeout", g.send_timeout),
        ("probe_interval", g.probe_interval),
        ("probe_timeout", g.probe_timeout),
        ("header_timeout", g.header_timeout),
        ("body_timeout", g.body_timeout),
        ("idle_timeout", g.idle_timeout),
    ] {
        if v.0 == 0 {
            err(field, "must be above zero".into());
        }
    }
    if g.max_in_flight == 0 {
        err("max_in_flight", "must be above zero".into());
    }
    if g.token_max_in_flight == Some(0) {
        err("token_max_in_flight", "must be above zero".into());
    }
    if g.max_connections == 0 {
        err("max_connections", "must be above zero".into());
    }
    match (g.auth, &g.token_file) {
        (Auth::Tokens, None) => err(
            "token_file",
            "auth = \"tokens\" (the default) needs a token file: make one with `tidemark gateway token add`, or set auth = \"none\" for local use".into(),
        ),
        (Auth::Tokens, Some(path)) => {
            if let Err(e) = std::fs::metadata(path) {
                err("token_file", format!("{}: {e}", path.display()));
            }
        }
        (Auth::None, Some(_)) => err(
            "token_file",
            "set with auth = \"none\": the tokens would not be asked for".into(),
        ),
        (Auth::None, None) => {}
    }
    if let Some(tls) = &g.tls {
        let files = [("tls.cert", Some(&tls.cert)), ("tls.key", Some(&tls.key))];
        for (field, path) in files
            .into_iter()
            .chain([("tls.client_ca", tls.client_ca.as_ref())])
        {
            if let Some(path) = path {
                if let Err(e) = std::fs::metadata(path) {
                    err(field, format!("{}: {e}", path.display()));
                }
            }
        }
    }
    if g.max_body_bytes < 2 {
        err("max_body_bytes", "must hold at least one event".into());
    }
    if errors.is_empty() {
        Ok(GatewayFile {
            gateway: g,
            event,
            clusters,
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(gateway: &str) -> Vec<(String, String)> {
        let text = format!(
            "[gateway]\nlocal_region = \"a\"\n{gateway}\n[clusters.a]\nbootstrap = \"x:1\"\n[clusters.b]\nbootstrap = \"y:1\"\n"
        );
        match parse_gateway(&text) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| (e.field, e.message)).collect(),
        }
    }

    /// Tokens are the default, so a file must name its token file or say `auth = "none"`;
    /// every file it names must exist; each error names its field.
    #[test]
    fn auth_and_tls_files_are_checked_by_field() {
        let e = errors("");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "token_file");
        assert!(e[0].1.contains("tidemark gateway token add"), "{e:?}");
        assert!(errors("auth = \"none\"").is_empty());
        let e = errors("auth = \"none\"\ntoken_file = \"t.toml\"");
        assert_eq!(e[0].0, "token_file", "{e:?}");
        let e = errors("token_file = \"/nonexistent/tokens.toml\"");
        assert_eq!(e[0].0, "token_file", "{e:?}");
        let e = errors(
            "auth = \"none\"\n[gateway.tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"",
        );
        let fields: Vec<&str> = e.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["tls.cert", "tls.key"], "{e:?}");
        let e = errors("auth = \"none\"\n[gateway.tls]\ncert = \"c.pem\"\nkeyfile = \"k.pem\"");
        assert!(e.iter().any(|(_, m)| m.contains("keyfile")), "{e:?}");
    }
}
