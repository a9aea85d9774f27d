//! One clock for every system in the side-by-side benchmarks: how long a job took to write its
//! outputs, read from Kafka rather than from the job.
//!
//! Each system used to time itself its own way (tidemark its summary, Kafka Streams from its
//! first record to `close()`, Flink its job's net runtime with the scheduling in it). Here the
//! output topics are created with `message.timestamp.type=LogAppendTime`, so every record
//! carries the broker's clock at the moment it was appended, and the span from the first
//! append to the last is the job's time for every system alike. It starts a few milliseconds
//! after the job's first read (the first invalid or late record is written at once, and the
//! input has them in its first thousand records) and ends with its last record written. A
//! transaction's commit marker is not a record a reader is given, so an exactly-once job's last
//! commit falls outside the span, for every system alike.

use std::time::Duration;

/// Options of `tidemark bench-span`.
#[derive(Debug, Clone, clap::Args)]
pub struct SpanOptions {
    /// Bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:19092")]
    pub bootstrap: String,
    /// The topics the job wrote (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub topics: Vec<String>,
    /// Records the job read, for the rate.
    #[arg(long)]
    pub records: u64,
}

/// The first and last append time over some topics' records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Records read back.
    pub records: u64,
    /// The earliest record timestamp, epoch milliseconds.
    pub first_ms: i64,
    /// The latest.
    pub last_ms: i64,
}

impl Span {
    /// From first to last.
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.last_ms.saturating_sub(self.first_ms).max(0) as u64)
    }
}

/// Errors of measuring a span.
#[derive(Debug, thiserror::Error)]
pub enum SpanError {
    /// Reading a topic failed.
    #[error("reading {topic}: {source}")]
    Read {
        /// The topic.
        topic: String,
        /// Why.
        source: rdkafka::error::KafkaError,
    },
    /// A topic's records are not stamped by the broker, so their times are the job's clock.
    #[error("{topic} has a record whose timestamp is not the broker's (create it with message.timestamp.type=LogAppendTime)")]
    NotAppendTime {
        /// The topic.
        topic: String,
    },
    /// Nothing was written.
    #[error("the topics hold no records")]
    Empty,
}

/// The span of the records of `topics`, every one of which must carry its append time.
pub fn span(bootstrap: &str, topics: &[String]) -> Result<Span, SpanError> {
    use rdkafka::message::Timestamp;
    use rdkafka::Message;
    let mut out: Option<Span> = None;
    for topic in topics {
        let stamps = crate::tools::topic::read_topic_with(bootstrap, topic, |m| m.timestamp())
            .map_err(|source| SpanError::Read {
                topic: topic.clone(),
                source,
            })?;
        for stamp in stamps {
            let Timestamp::LogAppendTime(ms) = stamp else {
                return Err(SpanError::NotAppendTime {
                    topic: topic.clone(),
                });
            };
            let s = out.get_or_insert(Span {
                records: 0,
                first_ms: ms,
                last_ms: ms,
            });
            s.records += 1;
            s.first_ms = s.first_ms.min(ms);
            s.last_ms = s.last_ms.max(ms);
        }
    }
    out.ok_or(SpanError::Empty)
}

/// Runs `tidemark bench-span`: one line, `records/s` over the span, for the harness to parse.
pub fn run(o: &SpanOptions) -> Result<(), SpanError> {
    let s = span(&o.bootstrap, &o.topics)?;
    let secs = s.duration().as_secs_f64();
    println!(
        "span: {} records written from {} to {} ms ({:.2} s); {} records read in it ({:.0} records/s)",
        s.records,
        s.first_ms,
        s.last_ms,
        secs,
        o.records,
        if secs > 0.0 {
            o.records as f64 / secs
        } else {
            0.0
        }
    );
    Ok(())
}
