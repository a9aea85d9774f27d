//! JSON-lines files. Each file is one split; the offset of a record is its line number.
//! Offsets are not stored anywhere: a restarted job reads its files again from the start.

use super::{Polled, ReadOptions, SourceContext, SourceError, SourceNode, SplitReader};
use crate::component::{CheckContext, Component, Errors};
use crate::event::{SplitSource, Splits};
use serde::Deserialize;
use std::fs::File;
use std::io::{BufRead, BufReader};

/// JSON-lines files; each file is one partition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// Files to read.
    pub paths: Vec<String>,
    /// Origin region reported for these events.
    pub region: String,
}

impl Component for FileSource {
    fn check(&self, _cx: &CheckContext<'_>, errors: &mut Errors<'_>) {
        if self.region.trim().is_empty() {
            errors.field("region", "must not be empty");
        }
        if self.paths.is_empty() {
            errors.field("paths", "needs at least one file");
        }
    }
}

impl SourceNode for FileSource {
    fn region(&self) -> &str {
        &self.region
    }

    fn plan(
        &self,
        node: &str,
        _cx: &SourceContext<'_>,
        splits: &mut Splits,
    ) -> Result<(), SourceError> {
        for path in &self.paths {
            splits.push(node, &self.region, SplitSource::File { path: path.clone() });
        }
        Ok(())
    }

    fn open(
        &self,
        node: &str,
        cx: &SourceContext<'_>,
        splits: &Splits,
        owned: &[u32],
    ) -> Result<Box<dyn SplitReader>, SourceError> {
        Ok(Box::new(FileReader::open(node, splits, owned, &cx.read)?))
    }

    fn label(&self) -> String {
        "file".into()
    }
}

struct OpenFile {
    split: u32,
    reader: BufReader<File>,
    line: i64,
    finished: bool,
    /// A partial last line waits here until its newline arrives (tailing mode).
    partial: Vec<u8>,
}

/// Reads the files one worker owns.
struct FileReader {
    files: Vec<OpenFile>,
    bounded: bool,
    buf: Vec<u8>,
}

impl FileReader {
    fn open(
        node: &str,
        splits: &Splits,
        owned: &[u32],
        options: &ReadOptions,
    ) -> Result<FileReader, SourceError> {
        let mut files = Vec::new();
        for &split in owned {
            let SplitSource::File { path } = &splits.get(split).source else {
                continue;
            };
            let f = File::open(path).map_err(|source| SourceError::File {
                node: node.into(),
                path: path.clone(),
                source,
            })?;
            files.push(OpenFile {
                split,
                reader: BufReader::with_capacity(1 << 16, f),
                line: 0,
                finished: false,
                partial: Vec::new(),
            });
        }
        Ok(FileReader {
            files,
            bounded: options.bounded,
            buf: Vec::new(),
        })
    }
}

impl SplitReader for FileReader {
    fn poll(
        &mut self,
        budget: usize,
        each: &mut dyn FnMut(Polled<'_>),
    ) -> Result<usize, SourceError> {
        let mut n = 0;
        // Files are read side by side, as Kafka fetches partitions, so the watermark (the
        // minimum over partitions) advances instead of waiting for one file after another.
        let share = (budget / self.files.len().max(1)).max(1);
        for f in &mut self.files {
            let stop = (n + share).min(budget);
            while n < stop && !f.finished {
                self.buf.clear();
                self.buf.append(&mut f.partial);
                let read = f.reader.read_until(b'\n', &mut self.buf).unwrap_or(0);
                let complete = self.buf.last() == Some(&b'\n');
                if read == 0 || (!complete && !self.bounded) {
                    // Keep a partial line for when the writer finishes it.
                    std::mem::swap(&mut f.partial, &mut self.buf);
                    each(Polled::End { split: f.split });
                    if self.bounded {
                        f.finished = true;
                        each(Polled::Finished { split: f.split });
                    }
                    break;
                }
                let mut line: &[u8] = &self.buf;
                while let [rest @ .., b'\n' | b'\r'] = line {
                    line = rest;
                }
                let offset = f.line;
                f.line += 1;
                if line.is_empty() {
                    continue;
                }
                each(Polled::Record {
                    split: f.split,
                    offset,
                    bytes: line,
                    timestamp: None,
                });
                n += 1;
            }
        }
        Ok(n)
    }

    fn commit(&mut self, _offsets: &[(u32, i64)], _sync: bool) -> Result<(), SourceError> {
        Ok(())
    }
}
