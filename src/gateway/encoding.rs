//! Compressed request bodies: `Content-Encoding: gzip` (what log agents send by default) and
//! `zstd`. A body is inflated to at most the gateway's body limit and no further, so a small
//! body that would inflate to gigabytes costs the gateway the limit, not the gigabytes.

use std::io::Read;

/// A request body's `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// None, or `identity`.
    Identity,
    /// `gzip` (or `x-gzip`): one or more gzip members.
    Gzip,
    /// `zstd`: one or more zstd frames.
    Zstd,
}

impl Encoding {
    /// The encoding a header names, or why it is not one the gateway takes.
    pub fn from_header(value: Option<&str>) -> Result<Encoding, String> {
        let Some(value) = value else {
            return Ok(Encoding::Identity);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "zstd" => Ok(Encoding::Zstd),
            other => Err(format!(
                "Content-Encoding \"{other}\" is not supported (send gzip, zstd, or none)"
            )),
        }
    }
}

/// Why a body could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// It inflates to more than the limit.
    #[error("the body inflates to more than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// It is not what its encoding says.
    #[error("the body is not valid {encoding}: {message}")]
    Corrupt {
        /// `gzip` or `zstd`.
        encoding: &'static str,
        /// The decoder's complaint.
        message: String,
    },
}

/// `body` inflated, at most `limit` bytes of it.
pub fn inflate(encoding: Encoding, body: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let mut out = Vec::new();
    match encoding {
        Encoding::Identity => out.extend_from_slice(body),
        Encoding::Gzip => read_up_to(flate2::read::MultiGzDecoder::new(body), limit, &mut out)
            .map_err(|e| corrupt("gzip", e))?,
        Encoding::Zstd => {
            let mut input = body;
            // Frames follow one another: each gets a decoder of its own, all one limit.
            while !input.is_empty() {
                let frame = ruzstd::decoding::StreamingDecoder::new(&mut input)
                    .map_err(|e| corrupt("zstd", e))?;
                let left = (limit + 1).saturating_sub(out.len());
                read_up_to(frame, left.saturating_sub(1), &mut out)
                    .map_err(|e| corrupt("zstd", e))?;
                if out.len() > limit {
                    break;
                }
            }
        }
    }
    if out.len() > limit {
        return Err(InflateError::TooLarge { limit });
    }
    Ok(out)
}

/// Appends what `reader` yields to `out`, stopping one byte past `limit`: enough to know the
/// limit was passed, never more.
fn read_up_to(reader: impl Read, limit: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    reader.take(limit as u64 + 1).read_to_end(out).map(|_| ())
}

fn corrupt(encoding: &'static str, e: impl std::fmt::Display) -> InflateError {
    InflateError::Corrupt {
        encoding,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    #[test]
    fn bodies_inflate_to_what_was_compressed() {
        let data = b"{\"message\":\"hello\"}\n".repeat(100);
        for (encoding, body) in [(Encoding::Gzip, gzip(&data)), (Encoding::Zstd, zstd(&data))] {
            assert_eq!(inflate(encoding, &body, data.len()).unwrap(), data);
            // One byte less is over the limit.
            assert_eq!(
                inflate(encoding, &body, data.len() - 1),
                Err(InflateError::TooLarge {
                    limit: data.len() - 1
                })
            );
        }
        // Two zstd frames and two gzip members are one body each.
        let mut two = zstd(&data);
        two.extend(zstd(&data));
        assert_eq!(
            inflate(Encoding::Zstd, &two, 2 * data.len()).unwrap().len(),
            2 * data.len()
        );
        let mut two = gzip(&data);
        two.extend(gzip(&data));
        assert_eq!(
            inflate(Encoding::Gzip, &two, 2 * data.len()).unwrap().len(),
            2 * data.len()
        );
    }

    /// A bomb costs the limit, not what it would inflate to.
    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 16 << 20];
        for (encoding, body) in [
            (Encoding::Gzip, gzip(&zeros)),
            (Encoding::Zstd, zstd(&zeros)),
        ] {
            assert!(body.len() < 1 << 20, "{encoding:?}: {} bytes", body.len());
            assert_eq!(
                inflate(encoding, &body, 1 << 20),
                Err(InflateError::TooLarge { limit: 1 << 20 })
            );
        }
    }

    #[test]
    fn corrupt_bodies_and_unknown_encodings_are_refused() {
        for encoding in [Encoding::Gzip, Encoding::Zstd] {
            let e = inflate(encoding, b"not compressed at all", 1000).unwrap_err();
            assert!(matches!(e, InflateError::Corrupt { .. }), "{e}");
        }
        assert_eq!(Encoding::from_header(Some("GZIP")), Ok(Encoding::Gzip));
        assert_eq!(Encoding::from_header(None), Ok(Encoding::Identity));
        let e = Encoding::from_header(Some("br")).unwrap_err();
        assert!(e.contains("\"br\" is not supported"), "{e}");
    }
}
