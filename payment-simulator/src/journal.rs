//! The optional append-only journal: one JSON line per change, each carrying the
//! intent as it now stands and/or the idempotent answer just stored. An intent change
//! and the answer it produced share one line, so a restart never finds the one without
//! the other.
//!
//! On start the journal is replayed (the last line of an intent wins; answers older
//! than a day are skipped), then compacted — rewritten to a sibling file with one line
//! per live record and renamed over the original — and appended to from then on.
//! Every line is flushed as written; no fsync (a simulator survives a process restart,
//! not a power cut).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::idempotency::Stored;
use crate::ledger::Intent;

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Intent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
}

/// An idempotent answer and its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Answer {
    pub key: String,
    #[serde(flatten)]
    pub stored: Stored,
}

/// The open journal, appended to.
#[derive(Debug)]
pub(crate) struct Journal {
    file: BufWriter<File>,
}

/// Reads every entry of the journal at `path` (none if it does not exist yet).
///
/// A torn last line (the process died mid-write) is skipped; a bad line elsewhere is an
/// error, since skipping it would silently lose a payment.
pub(crate) fn read(path: &Path) -> io::Result<Vec<Entry>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let lines: Vec<String> = BufReader::new(file).lines().collect::<io::Result<_>>()?;
    let last = lines.len().saturating_sub(1);
    let mut entries = Vec::with_capacity(lines.len());
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(entry) => entries.push(entry),
            Err(e) if n == last => {
                tracing::warn!(line = n + 1, error = %e, "skipping a torn last journal line");
            }
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("journal line {}: {e}", n + 1),
                ))
            }
        }
    }
    Ok(entries)
}

impl Journal {
    /// Replaces the journal at `path` with `entries` (atomically, by rename) and opens
    /// it for appending.
    pub(crate) fn rewrite(path: &Path, entries: impl Iterator<Item = Entry>) -> io::Result<Self> {
        let mut tmp = PathBuf::from(path);
        tmp.as_mut_os_string().push(".compacting");
        {
            let mut out = BufWriter::new(File::create(&tmp)?);
            for entry in entries {
                write_line(&mut out, &entry)?;
            }
            out.flush()?;
        }
        std::fs::rename(&tmp, path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Self {
            file: BufWriter::new(file),
        })
    }

    /// Appends one entry and flushes it to the OS.
    pub(crate) fn append(&mut self, entry: &Entry) -> io::Result<()> {
        write_line(&mut self.file, entry)?;
        self.file.flush()
    }
}

fn write_line(out: &mut impl Write, entry: &Entry) -> io::Result<()> {
    serde_json::to_writer(&mut *out, entry)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path() -> PathBuf {
        let name = format!("payment-sim-journal-{}.jsonl", crate::ledger::new_id(""));
        std::env::temp_dir().join(name)
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_a_bad_middle_line_is_an_error() {
        let path = temp_path();
        let answer = Entry {
            intent: None,
            answer: Some(Answer {
                key: "k".into(),
                stored: Stored {
                    fingerprint: "f".into(),
                    status: 200,
                    body: "{}".into(),
                    stored_at: 1,
                },
            }),
        };
        let line = serde_json::to_string(&answer).unwrap();
        std::fs::write(&path, format!("{line}\n{line}\n{{\"answer\":{{\"ke")).unwrap();
        assert_eq!(read(&path).unwrap(), vec![answer.clone(), answer.clone()]);

        std::fs::write(&path, format!("{line}\nnot json\n{line}\n")).unwrap();
        assert_eq!(read(&path).unwrap_err().kind(), io::ErrorKind::InvalidData);

        let mut journal = Journal::rewrite(&path, std::iter::once(answer.clone())).unwrap();
        journal.append(&answer).unwrap();
        assert_eq!(read(&path).unwrap().len(), 2);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_missing_journal_is_an_empty_one() {
        assert!(read(&temp_path()).unwrap().is_empty());
    }
}
