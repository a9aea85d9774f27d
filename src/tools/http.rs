//! A small blocking HTTP/1.1 client with keep-alive, for the gateway's load generator and tests:
//! enough for the gateway's own answers (always with `Content-Length`), nothing more.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A connection, in plain text or TLS.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One keep-alive connection to a server.
pub struct HttpClient {
    host: String,
    conn: BufReader<Box<dyn Stream>>,
}

/// How an [`HttpClient`] speaks TLS: the CA it trusts, and the certificate it shows, if any.
#[derive(Clone)]
pub struct ClientTls {
    config: std::sync::Arc<rustls::ClientConfig>,
}

impl ClientTls {
    /// Trusts the CA certificates of the PEM file `ca`; shows `identity` (a certificate chain
    /// and its key, PEM files) when the server asks for one.
    pub fn new(
        ca: &std::path::Path,
        identity: Option<(&std::path::Path, &std::path::Path)>,
    ) -> std::io::Result<ClientTls> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let invalid = |e: &dyn std::fmt::Display| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| invalid(&e))? {
            roots
                .add(cert.map_err(|e| invalid(&e))?)
                .map_err(|e| invalid(&e))?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(&e))?
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| invalid(&e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| invalid(&e))?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(&e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| invalid(&e))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(ClientTls {
            config: std::sync::Arc::new(config),
        })
    }
}

impl HttpClient {
    /// Connects to `addr` (`host:port`).
    pub fn connect(addr: &str) -> std::io::Result<HttpClient> {
        Ok(HttpClient {
            host: addr.to_string(),
            conn: BufReader::new(Box::new(tcp(addr)?)),
        })
    }

    /// Connects to `addr` over TLS, checking the server's certificate against `addr`'s host.
    /// The handshake happens with the first request, whose error says why it failed.
    pub fn connect_tls(addr: &str, tls: &ClientTls) -> std::io::Result<HttpClient> {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let name = rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let conn = rustls::ClientConnection::new(std::sync::Arc::clone(&tls.config), name)
            .map_err(std::io::Error::other)?;
        Ok(HttpClient {
            host: addr.to_string(),
            conn: BufReader::new(Box::new(rustls::StreamOwned::new(conn, tcp(addr)?))),
        })
    }

    /// Sends one request and reads its response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<HttpResponse> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let stream = self.conn.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        stream.flush()?;
        self.read_response()
    }

    /// A chunked body (what Prometheus sends for larger answers); trailers are skipped.
    fn read_chunks(&mut self) -> std::io::Result<Vec<u8>> {
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk");
        let mut body = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            self.conn.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size, 16).map_err(|_| bad())?;
            if size == 0 {
                loop {
                    line.clear();
                    if self.conn.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        return Ok(body);
                    }
                }
            }
            let at = body.len();
            body.resize(at + size, 0);
            self.conn.read_exact(&mut body[at..])?;
            line.clear();
            self.conn.read_line(&mut line)?;
        }
    }

    fn read_response(&mut self) -> std::io::Result<HttpResponse> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut line = String::new();
        if self.conn.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.conn.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').ok_or_else(|| bad("bad header"))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        let body = if chunked {
            self.read_chunks()?
        } else {
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .ok_or_else(|| bad("no content-length"))?;
            let mut body = vec![0; len];
            self.conn.read_exact(&mut body)?;
            body
        };
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

fn tcp(addr: &str) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    // A gateway answers within its send timeouts; a minute means something is stuck.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    Ok(stream)
}
