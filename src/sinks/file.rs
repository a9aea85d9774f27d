//! JSON lines appended to a file (or stdout). Each batch is written with one `write` call on a
//! file opened for append, so workers and processes sharing a path never split a line.

use super::{SinkContext, SinkError, SinkItem, SinkNode};
use crate::component::{on_either, AnyStream, CheckContext, Component, Errors};
use crate::event::Splits;
use crate::runtime::WorkerContext;
use serde::Deserialize;
use std::io::Write;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

/// One line of the `envelope` format.
pub fn envelope_line<T: SinkItem>(item: &T, splits: &Splits, out: &mut Vec<u8>) {
    let mut obj = serde_json::Map::new();
    if let Some(p) = item.partition() {
        obj.insert("partition".into(), p.into());
    }
    if let Some(k) = item.key() {
        obj.insert("key".into(), k.into());
    }
    let mut headers = serde_json::Map::new();
    for (k, v) in item.headers(splits) {
        headers.insert(k.into(), v.into());
    }
    obj.insert("headers".into(), headers.into());
    let payload = match serde_json::from_slice::<serde_json::Value>(item.payload()) {
        Ok(v) => v,
        Err(_) => String::from_utf8_lossy(item.payload()).into_owned().into(),
    };
    obj.insert("payload".into(), payload);
    // Serialising a Value to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &serde_json::Value::Object(obj));
    out.push(b'\n');
}

enum Target {
    Stdout,
    File(std::fs::File),
}

/// How a file sink writes a record.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// The payload bytes, one per line.
    #[default]
    Payload,
    /// A JSON object with the metadata and the payload.
    Envelope,
}

/// JSON lines appended to a file, or `-` for stdout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSink {
    /// Inputs.
    pub inputs: Vec<String>,
    /// Path, or `-`.
    pub path: String,
    /// What each line holds.
    #[serde(default)]
    pub format: FileFormat,
}

impl Component for FileSink {
    fn check(&self, _cx: &CheckContext<'_>, errors: &mut Errors<'_>) {
        if self.path.trim().is_empty() {
            errors.field("path", "must not be empty (use \"-\" for stdout)");
        }
    }
}

impl SinkNode for FileSink {
    fn inputs(&self) -> &[String] {
        &self.inputs
    }

    fn build<'s>(
        &self,
        node: &str,
        input: AnyStream<'s>,
        _cx: &SinkContext<'_>,
        worker: &WorkerContext,
    ) -> Result<Stream<'s, u64, Vec<()>>, SinkError> {
        on_either!(input, s => file_sink(s, node, &self.path, self.format, worker))
    }
}

/// Appends `input` to `path` in `format`.
pub fn file_sink<'scope, T: SinkItem>(
    input: Stream<'scope, u64, Vec<T>>,
    name: &str,
    path: &str,
    format: FileFormat,
    ctx: &WorkerContext,
) -> Result<Stream<'scope, u64, Vec<()>>, SinkError> {
    let mut target = if path == "-" {
        Target::Stdout
    } else {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| SinkError::File {
                sink: name.into(),
                path: path.into(),
                source,
            })?;
        Target::File(f)
    };
    let splits = std::sync::Arc::clone(&ctx.splits);
    let counter = ctx.metrics.events_out.with_label_values(&[name]);
    let failure = std::rc::Rc::clone(&ctx.failure);
    let sink = name.to_string();
    let path = path.to_string();
    Ok(
        input.unary::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(
            Pipeline,
            &format!("File({name})"),
            move |_cap, _info| {
                let mut buf = Vec::new();
                move |input, _output| {
                    let mut n = 0;
                    input.for_each(|_cap, data| {
                        for item in data.drain(..) {
                            match format {
                                FileFormat::Payload => {
                                    buf.extend_from_slice(item.payload());
                                    buf.push(b'\n');
                                }
                                FileFormat::Envelope => envelope_line(&item, &splits, &mut buf),
                            }
                            n += 1;
                        }
                    });
                    if buf.is_empty() {
                        return;
                    }
                    // The write completes inside this activation, before the input capability is
                    // released, so the frontier never runs ahead of the file.
                    let written = match &mut target {
                        Target::Stdout => {
                            let mut out = std::io::stdout().lock();
                            out.write_all(&buf).and_then(|_| out.flush())
                        }
                        Target::File(f) => f.write_all(&buf),
                    };
                    buf.clear();
                    match written {
                        Ok(()) => counter.inc_by(n),
                        // A closed stdout (`| head`) is the reader's choice, not data at risk.
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                        Err(e) => {
                            *failure.borrow_mut() = Some(format!("file sink {sink}: {path}: {e}"));
                        }
                    }
                }
            },
        ),
    )
}
