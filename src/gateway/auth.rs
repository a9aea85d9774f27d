//! API tokens (`auth = "tokens"`): `Authorization: Bearer TOKEN`, checked against a token file
//! that holds only each token's SHA-256.
//!
//! ```toml
//! # gateway-tokens.toml, written by `tidemark gateway token add`
//! [[token]]
//! name = "checkout"               # metrics and logs say this, never the token
//! producer = "checkout-service"   # the sticky key: the token cannot pose as another producer
//! regions = ["region-a"]          # optional: the regions it may write to (all by default)
//! sha256 = "9f86d08..."
//! ```
//!
//! A token is 32 random bytes, so a hash without salt or stretching is enough: nothing about it
//! can be guessed, and a leaked file gives no token. The file is read again when it changes
//! ([`super::watch`]), so a token added or removed needs no restart.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a token file says of one token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// Its name, for metrics and logs.
    pub name: String,
    /// The producer id it writes as.
    pub producer: String,
    /// The regions it may write to; empty for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// SHA-256 of the token, lowercase hex.
    pub sha256: String,
    /// Events a second it may write (a token bucket of one second); no limit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_per_second: Option<f64>,
    /// Request bytes a second (as inflated); no limit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<f64>,
}

/// A token file: `[[token]]` tables.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<Token>,
}

/// Token file errors.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a token file.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its place.
        message: String,
    },
}

fn io_error(path: &Path, source: std::io::Error) -> TokenError {
    TokenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, message: impl ToString) -> TokenError {
    TokenError::Invalid {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// SHA-256 of `token`, lowercase hex.
pub fn hash(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    hex(digest.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads and checks a token file: names unique, hashes well formed and unique.
pub fn read(path: &Path) -> Result<Vec<Token>, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    let file: TokenFile = toml::from_str(&text).map_err(|e| invalid(path, e))?;
    let mut names = std::collections::HashSet::new();
    let mut hashes = std::collections::HashSet::new();
    for (i, t) in file.token.iter().enumerate() {
        let at = format!("token[{i}] ({})", t.name);
        if t.name.trim().is_empty() || t.producer.trim().is_empty() {
            return Err(invalid(
                path,
                format!("{at}: name and producer must not be empty"),
            ));
        }
        if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(path, format!("{at}: sha256 must be 64 hex digits")));
        }
        if !names.insert(t.name.clone()) {
            return Err(invalid(path, format!("{at}: the name is used twice")));
        }
        for (field, rate) in [
            ("events_per_second", t.events_per_second),
            ("bytes_per_second", t.bytes_per_second),
        ] {
            if rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
                return Err(invalid(path, format!("{at}: {field} must be above zero")));
            }
        }
        if !hashes.insert(t.sha256.to_ascii_lowercase()) {
            return Err(invalid(
                path,
                format!("{at}: the same token is listed twice"),
            ));
        }
    }
    Ok(file.token)
}

/// Adds a token named `name` for `producer` to the file at `path` (made if missing), and
/// returns the token: the only time it is ever shown.
pub fn add(
    path: &Path,
    name: &str,
    producer: &str,
    regions: &[String],
    limits: Limits,
) -> Result<String, TokenError> {
    let mut tokens = if path.exists() {
        read(path)?
    } else {
        Vec::new()
    };
    if tokens.iter().any(|t| t.name == name) {
        return Err(invalid(
            path,
            format!("a token named \"{name}\" exists already"),
        ));
    }
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| invalid(path, "the system's random source failed"))?;
    let token = format!("tdm_{}", hex(&secret));
    tokens.push(Token {
        name: name.into(),
        producer: producer.into(),
        regions: regions.to_vec(),
        sha256: hash(&token),
        events_per_second: limits.events_per_second,
        bytes_per_second: limits.bytes_per_second,
    });
    write(path, &tokens)?;
    Ok(token)
}

/// A token's rates (see [`Token`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Events a second.
    pub events_per_second: Option<f64>,
    /// Request bytes a second.
    pub bytes_per_second: Option<f64>,
}

/// Removes the token named `name`; whether there was one.
pub fn remove(path: &Path, name: &str) -> Result<bool, TokenError> {
    let mut tokens = read(path)?;
    let before = tokens.len();
    tokens.retain(|t| t.name != name);
    if tokens.len() == before {
        return Ok(false);
    }
    write(path, &tokens)?;
    Ok(true)
}

/// Writes the file whole, then renames it into place: a gateway reading it sees the old file or
/// the new one.
fn write(path: &Path, tokens: &[Token]) -> Result<(), TokenError> {
    let body = toml::to_string(&TokenFile {
        token: tokens.to_vec(),
    })
    .map_err(|e| invalid(path, e))?;
    let text = format!(
        "# API tokens of the tidemark gateway: only their SHA-256. Managed with `tidemark gateway token add|remove`.\n\n{body}"
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer` header (401).
    Missing,
    /// A token the file does not list (401).
    Unknown,
}

/// The tokens a gateway accepts, by hash, kept in step with their file ([`super::watch`]).
#[derive(Debug)]
pub struct Tokens(super::watch::Watched<HashMap<String, Arc<Token>>>);

fn index(tokens: Vec<Token>) -> HashMap<String, Arc<Token>> {
    tokens
        .into_iter()
        .map(|t| (t.sha256.to_ascii_lowercase(), Arc::new(t)))
        .collect()
}

impl Tokens {
    /// The tokens of the file at `path`, read now.
    pub fn open(path: &Path) -> Result<Tokens, TokenError> {
        let first = index(read(path)?);
        let again = path.to_path_buf();
        Ok(Tokens(super::watch::Watched::new(
            "gateway token file",
            vec![path.to_path_buf()],
            first,
            move || read(&again).map(index).map_err(|e| e.to_string()),
        )))
    }

    /// Every token's name, for the metrics' series.
    pub fn names(&self) -> Vec<String> {
        self.0.current().values().map(|t| t.name.clone()).collect()
    }

    /// The token an `Authorization` header carries.
    pub fn check(&self, authorization: Option<&str>) -> Result<Arc<Token>, Denied> {
        let token = authorization
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(Denied::Missing)?;
        self.0
            .current()
            .get(&hash(token))
            .cloned()
            .ok_or(Denied::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_added_is_accepted_and_only_its_hash_is_kept() {
        let dir = std::env::temp_dir().join(format!("tidemark-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.toml");
        let _ = std::fs::remove_file(&path);
        let a = add(
            &path,
            "checkout",
            "checkout-service",
            &["region-a".into()],
            Limits::default(),
        )
        .unwrap();
        let b = add(&path, "billing", "billing", &[], Limits::default()).unwrap();
        assert_ne!(a, b);
        assert!(
            add(&path, "checkout", "x", &[], Limits::default()).is_err(),
            "a name used twice"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&a[4..]) && !text.contains(&b[4..]), "{text}");
        let tokens = Tokens::open(&path).unwrap();
        let t = tokens.check(Some(&format!("Bearer {a}"))).unwrap();
        assert_eq!(
            (t.name.as_str(), t.producer.as_str()),
            ("checkout", "checkout-service")
        );
        assert_eq!(t.regions, vec!["region-a".to_string()]);
        assert_eq!(
            tokens.check(Some(&format!("bearer  {b} "))).unwrap().name,
            "billing"
        );
        assert_eq!(tokens.check(None).unwrap_err(), Denied::Missing);
        assert_eq!(
            tokens.check(Some("Basic abc")).unwrap_err(),
            Denied::Missing
        );
        assert_eq!(
            tokens.check(Some("Bearer tdm_nope")).unwrap_err(),
            Denied::Unknown
        );
        assert!(remove(&path, "billing").unwrap());
        assert!(!remove(&path, "billing").unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
