//! Container logs in the CRI format, with size-based rotation.
//!
//! One line per record: `<RFC3339Nano> <stdout|stderr> <F|P> <content>`.
//! `F` marks a full line; a line longer than [`MAX_LINE`] is cut into `P`
//! (partial) records, the last piece being `F` (as containerd does).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::{IoContext, Result};

/// Longest content of one record (containerd's 16 KiB buffer).
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Format a timestamp like Go's `time.RFC3339Nano` (trailing zeros of the
/// fraction trimmed).
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    let s = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
    // "2024-01-02T03:04:05.123000000Z" -> "2024-01-02T03:04:05.123Z"
    let body = &s[..s.len() - 1];
    let trimmed = match body.find('.') {
        Some(_) => body.trim_end_matches('0').trim_end_matches('.'),
        None => body,
    };
    format!("{trimmed}Z")
}

/// One CRI log record as bytes (with its trailing newline).
pub fn format_record(t: DateTime<Utc>, stream: Stream, partial: bool, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 48);
    out.extend_from_slice(format_timestamp(t).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// A parsed CRI log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub timestamp: DateTime<Utc>,
    pub stream: Stream,
    pub partial: bool,
    pub content: String,
}

/// Parse one CRI log line (without its newline).
pub fn parse_record(line: &str) -> Option<LogRecord> {
    let mut parts = line.splitn(4, ' ');
    let ts = parts.next()?;
    let stream = match parts.next()? {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or("").to_string();
    let timestamp = DateTime::parse_from_rfc3339(ts).ok()?.with_timezone(&Utc);
    Some(LogRecord {
        timestamp,
        stream,
        partial,
        content,
    })
}

/// Writes CRI records to `path`, rotating to `path.1`, `path.2`, ... when
/// the file would grow past `max_size`; keeps at most `max_files` files in
/// all (the live one included).
#[derive(Debug)]
pub struct CriLogWriter {
    path: PathBuf,
    max_size: u64,
    max_files: usize,
    file: File,
    size: u64,
    pending: [Vec<u8>; 2],
}

impl CriLogWriter {
    /// Open (append) `path`. `max_size == 0` disables rotation.
    pub fn open(path: &Path, max_size: u64, max_files: usize) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
        }
        let file = open_append(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(CriLogWriter {
            path: path.to_path_buf(),
            max_size,
            max_files: max_files.max(1),
            file,
            size,
            pending: [Vec::new(), Vec::new()],
        })
    }

    fn slot(stream: Stream) -> usize {
        match stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }

    /// Feed output of `stream`: complete lines are written as `F`
    /// records, overlong pending content as `P` records.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<()> {
        self.write_at(Utc::now(), stream, data)
    }

    /// [`Self::write`] with a given timestamp (for tests).
    pub fn write_at(&mut self, t: DateTime<Utc>, stream: Stream, data: &[u8]) -> Result<()> {
        let slot = Self::slot(stream);
        let mut buf = std::mem::take(&mut self.pending[slot]);
        buf.extend_from_slice(data);
        let mut start = 0;
        loop {
            let rest = &buf[start..];
            match rest.iter().position(|b| *b == b'\n') {
                Some(nl) if nl <= MAX_LINE => {
                    let line = rest[..nl].to_vec();
                    self.emit(t, stream, false, &line)?;
                    start += nl + 1;
                }
                _ if rest.len() > MAX_LINE => {
                    let chunk = rest[..MAX_LINE].to_vec();
                    self.emit(t, stream, true, &chunk)?;
                    start += MAX_LINE;
                }
                _ => break,
            }
        }
        self.pending[slot] = buf[start..].to_vec();
        Ok(())
    }

    /// Write out what is pending of `stream` now as a `P` record (a tty's
    /// prompt has no newline but must be seen).
    pub fn flush_partial(&mut self, stream: Stream) -> Result<()> {
        let slot = Self::slot(stream);
        let rest = std::mem::take(&mut self.pending[slot]);
        if !rest.is_empty() {
            self.emit(Utc::now(), stream, true, &rest)?;
        }
        self.file
            .flush()
            .ctx(|| format!("flush {}", self.path.display()))
    }

    /// Write out what is left of `stream` (at EOF) as a full line.
    pub fn finish(&mut self, stream: Stream) -> Result<()> {
        let slot = Self::slot(stream);
        let rest = std::mem::take(&mut self.pending[slot]);
        if !rest.is_empty() {
            self.emit(Utc::now(), stream, false, &rest)?;
        }
        self.file
            .flush()
            .ctx(|| format!("flush {}", self.path.display()))
    }

    fn emit(
        &mut self,
        t: DateTime<Utc>,
        stream: Stream,
        partial: bool,
        content: &[u8],
    ) -> Result<()> {
        let record = format_record(t, stream, partial, content);
        if self.max_size > 0 && self.size > 0 && self.size + record.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file
            .write_all(&record)
            .ctx(|| format!("write {}", self.path.display()))?;
        self.size += record.len() as u64;
        Ok(())
    }

    /// Rotate now: `path` becomes `path.1`, `path.1` becomes `path.2`, ...;
    /// files past `max_files` are removed.
    pub fn rotate(&mut self) -> Result<()> {
        rotate_files(&self.path, self.max_files)?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn rotate_files(path: &Path, max_files: usize) -> Result<()> {
    if max_files <= 1 {
        let _ = std::fs::remove_file(path);
        return Ok(());
    }
    // Keep path.1 .. path.(max_files-1).
    let _ = std::fs::remove_file(numbered(path, max_files - 1));
    for n in (1..max_files - 1).rev() {
        let from = numbered(path, n);
        if from.exists() {
            std::fs::rename(&from, numbered(path, n + 1))
                .ctx(|| format!("rename {}", from.display()))?;
        }
    }
    std::fs::rename(path, numbered(path, 1)).ctx(|| format!("rename {}", path.display()))
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ctx(|| format!("open {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap()
            + chrono::Duration::nanoseconds(120_000_000)
    }

    #[test]
    fn timestamp_like_go() {
        assert_eq!(format_timestamp(t()), "2024-05-06T07:08:09.12Z");
        let whole = Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap();
        assert_eq!(format_timestamp(whole), "2024-05-06T07:08:09Z");
        let fine = whole + chrono::Duration::nanoseconds(1);
        assert_eq!(format_timestamp(fine), "2024-05-06T07:08:09.000000001Z");
    }

    #[test]
    fn record_format_and_parse() {
        let r = format_record(t(), Stream::Stderr, false, b"hello world");
        assert_eq!(r, b"2024-05-06T07:08:09.12Z stderr F hello world\n");
        let p = parse_record("2024-05-06T07:08:09.12Z stderr F hello world").unwrap();
        assert_eq!(p.stream, Stream::Stderr);
        assert!(!p.partial);
        assert_eq!(p.content, "hello world");
        assert_eq!(p.timestamp, t());
        let p = parse_record("2024-05-06T07:08:09Z stdout P ").unwrap();
        assert!(p.partial);
        assert_eq!(p.content, "");
        assert!(parse_record("garbage").is_none());
        assert!(parse_record("2024-05-06T07:08:09Z stdin F x").is_none());
    }

    fn lines(path: &Path) -> Vec<LogRecord> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| parse_record(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_split_across_writes_and_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = CriLogWriter::open(&path, 0, 1).unwrap();
        w.write_at(t(), Stream::Stdout, b"hel").unwrap();
        w.write_at(t(), Stream::Stderr, b"err1\nerr").unwrap();
        w.write_at(t(), Stream::Stdout, b"lo\n\nnext").unwrap();
        w.finish(Stream::Stdout).unwrap();
        w.finish(Stream::Stderr).unwrap();
        let got: Vec<(Stream, bool, String)> = lines(&path)
            .into_iter()
            .map(|r| (r.stream, r.partial, r.content))
            .collect();
        assert_eq!(
            got,
            vec![
                (Stream::Stderr, false, "err1".to_string()),
                (Stream::Stdout, false, "hello".to_string()),
                (Stream::Stdout, false, "".to_string()),
                (Stream::Stdout, false, "next".to_string()),
                (Stream::Stderr, false, "err".to_string()),
            ]
        );
    }

    #[test]
    fn long_lines_become_partial_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = CriLogWriter::open(&path, 0, 1).unwrap();
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        w.write_at(t(), Stream::Stdout, &long[..100]).unwrap();
        w.write_at(t(), Stream::Stdout, &long[100..]).unwrap();
        w.write_at(t(), Stream::Stdout, b"\nshort\n").unwrap();
        // Exactly MAX_LINE bytes then newline is one full record.
        let exact = vec![b'y'; MAX_LINE];
        w.write_at(t(), Stream::Stdout, &exact).unwrap();
        w.write_at(t(), Stream::Stdout, b"\n").unwrap();
        let recs = lines(&path);
        let shape: Vec<(bool, usize)> = recs.iter().map(|r| (r.partial, r.content.len())).collect();
        assert_eq!(
            shape,
            vec![
                (true, MAX_LINE),
                (true, MAX_LINE),
                (false, 10),
                (false, 5),
                (false, MAX_LINE)
            ]
        );
        let joined: String = recs[..3].iter().map(|r| r.content.as_str()).collect();
        assert_eq!(joined.len(), long.len());
    }

    #[test]
    fn rotation_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let rec_len = format_record(t(), Stream::Stdout, false, b"line-00").len() as u64;
        // Room for exactly 3 records per file.
        let mut w = CriLogWriter::open(&path, rec_len * 3, 3).unwrap();
        for i in 0..14 {
            w.write_at(t(), Stream::Stdout, format!("line-{i:02}\n").as_bytes())
                .unwrap();
        }
        w.finish(Stream::Stdout).unwrap();
        let content =
            |p: &Path| -> Vec<String> { lines(p).into_iter().map(|r| r.content).collect() };
        assert_eq!(content(&path), ["line-12", "line-13"]);
        assert_eq!(
            content(&numbered(&path, 1)),
            ["line-09", "line-10", "line-11"]
        );
        assert_eq!(
            content(&numbered(&path, 2)),
            ["line-06", "line-07", "line-08"]
        );
        assert!(!numbered(&path, 3).exists());
        for p in [path.clone(), numbered(&path, 1), numbered(&path, 2)] {
            assert!(std::fs::metadata(&p).unwrap().len() <= rec_len * 3);
        }
    }

    #[test]
    fn reopen_appends_and_counts_existing_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let rec_len = format_record(t(), Stream::Stdout, false, b"a").len() as u64;
        {
            let mut w = CriLogWriter::open(&path, rec_len * 2, 2).unwrap();
            w.write_at(t(), Stream::Stdout, b"a\n").unwrap();
        }
        let mut w = CriLogWriter::open(&path, rec_len * 2, 2).unwrap();
        w.write_at(t(), Stream::Stdout, b"b\nc\n").unwrap();
        assert_eq!(lines(&path).len(), 1);
        assert_eq!(lines(&numbered(&path, 1)).len(), 2);
    }
}
