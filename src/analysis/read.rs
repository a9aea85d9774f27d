//! Reading a dead-letter topic, or a JSON-lines file of the same records, as one worker's share.

use super::AnalysisError;
use crate::kafka::ClusterConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::time::Duration;

/// Where the records are.
#[derive(Debug, Clone)]
pub enum Input {
    /// A Kafka topic.
    Kafka {
        /// Bootstrap servers.
        bootstrap: String,
        /// Topic.
        topic: String,
    },
    /// JSON lines in the file sink's `envelope` format: `{"headers": {...}, "payload": ...}`.
    File(std::path::PathBuf),
}

/// One record read: its headers and payload bytes, or why it could not be read at all.
pub type Record = Result<(BTreeMap<String, String>, Vec<u8>), String>;

/// One worker's share of an input: Kafka partitions `p` with `p % peers == index`, or file
/// lines `i` with `i % peers == index`.
pub struct Reader {
    inner: Inner,
    follow: bool,
}

enum Inner {
    Kafka {
        consumer: BaseConsumer<crate::kafka::Quiet>,
        /// partition -> end offset taken at start; a partition leaves when it reaches it.
        pending: BTreeMap<i32, i64>,
    },
    File {
        path: std::path::PathBuf,
        /// Bytes consumed so far (complete lines only).
        at: u64,
        line: u64,
        index: u64,
        peers: u64,
    },
}

fn kafka_client(bootstrap: &str) -> Result<ClusterConfig, AnalysisError> {
    Ok(crate::kafka::tool_cluster(bootstrap)?)
}

/// The partitions of `topic` and their (low, high) offsets; an error when it has none.
pub fn partitions(
    consumer: &BaseConsumer<crate::kafka::Quiet>,
    topic: &str,
) -> Result<Vec<(i32, i64, i64)>, AnalysisError> {
    let out = crate::kafka::partition_offsets(consumer, topic)?;
    if out.is_empty() {
        return Err(AnalysisError::NoTopic(topic.to_string()));
    }
    Ok(out)
}

/// A consumer for the analysis tools: no group rebalance, nothing committed.
pub fn consumer(bootstrap: &str) -> Result<BaseConsumer<crate::kafka::Quiet>, AnalysisError> {
    Ok(
        crate::kafka::consumer(&kafka_client(bootstrap)?, "tidemark-analysis")
            .create_with_context(crate::kafka::Quiet)?,
    )
}

impl Reader {
    /// Opens worker `index` of `peers`' share. Without `follow`, the share ends at the end
    /// offsets (or file length) seen now.
    pub fn open(
        input: &Input,
        index: usize,
        peers: usize,
        follow: bool,
    ) -> Result<Reader, AnalysisError> {
        let inner = match input {
            Input::Kafka { bootstrap, topic } => {
                let consumer = consumer(bootstrap)?;
                let mut tpl = rdkafka::TopicPartitionList::new();
                let mut pending = BTreeMap::new();
                for (p, low, high) in partitions(&consumer, topic)? {
                    if p as usize % peers != index {
                        continue;
                    }
                    tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(low))?;
                    if high > low {
                        pending.insert(p, high);
                    }
                }
                consumer.assign(&tpl)?;
                Inner::Kafka { consumer, pending }
            }
            Input::File(path) => Inner::File {
                path: path.clone(),
                at: 0,
                line: 0,
                index: index as u64,
                peers: peers as u64,
            },
        };
        Ok(Reader { inner, follow })
    }

    /// Reads up to `max` records into `out`. Returns false once a bounded share is exhausted.
    pub fn poll(&mut self, max: usize, out: &mut Vec<Record>) -> Result<bool, AnalysisError> {
        match &mut self.inner {
            Inner::Kafka { consumer, pending } => {
                let mut n = 0;
                while n < max {
                    if !self.follow && pending.is_empty() {
                        return Ok(false);
                    }
                    match consumer.poll(Duration::from_millis(if n == 0 { 200 } else { 0 })) {
                        Some(Ok(m)) => {
                            n += 1;
                            if let Some(end) = pending.get(&m.partition()) {
                                if m.offset() + 1 >= *end {
                                    pending.remove(&m.partition());
                                }
                            }
                            let headers = crate::kafka::headers_of(&m);
                            out.push(Ok((headers, m.payload().unwrap_or(&[]).to_vec())));
                        }
                        Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                            pending.remove(&p);
                        }
                        Some(Err(e)) => return Err(e.into()),
                        None => break,
                    }
                }
                Ok(self.follow || !pending.is_empty())
            }
            Inner::File {
                path,
                at,
                line,
                index,
                peers,
            } => {
                let io = |source| AnalysisError::Io {
                    path: path.display().to_string(),
                    source,
                };
                let mut f = std::fs::File::open(&*path).map_err(io)?;
                f.seek(std::io::SeekFrom::Start(*at)).map_err(io)?;
                let mut text = Vec::new();
                f.take(8 << 20).read_to_end(&mut text).map_err(io)?;
                // Only complete lines: a following writer may be in the middle of one.
                let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                let mut taken = 0;
                for l in text[..complete].split(|b| *b == b'\n') {
                    if taken == complete || out.len() >= max {
                        break;
                    }
                    taken += l.len() + 1;
                    *line += 1;
                    if (*line - 1) % *peers == *index && !l.iter().all(u8::is_ascii_whitespace) {
                        out.push(envelope(l));
                    }
                }
                *at += taken as u64;
                if taken == 0 && self.follow {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Ok(self.follow || taken > 0)
            }
        }
    }
}

/// One line of the file sink's envelope format.
fn envelope(line: &[u8]) -> Record {
    let v: serde_json::Value = serde_json::from_slice(line).map_err(|_| "bad line".to_string())?;
    let headers = v
        .get("headers")
        .and_then(|h| h.as_object())
        .ok_or_else(|| "bad line".to_string())?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let payload = match v.get("payload") {
        Some(serde_json::Value::String(s)) => s.clone().into_bytes(),
        Some(p) => serde_json::to_vec(p).unwrap_or_default(),
        None => return Err("bad line".into()),
    };
    Ok((headers, payload))
}
