//! `containerLogs`: reading a container's CRI log files like the kubelet
//! (tailLines, sinceSeconds/sinceTime, timestamps, limitBytes, previous,
//! follow until the container stops).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bosun_runtime::logs::parse_record;
use chrono::{DateTime, Utc};

/// Query parameters of a log request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub limit_bytes: Option<u64>,
    pub since: Option<DateTime<Utc>>,
}

impl LogOptions {
    /// From `(key, value)` query pairs; bad numbers are a client mistake.
    pub fn parse(q: &[(String, String)], now: DateTime<Utc>) -> Result<LogOptions, String> {
        let mut o = LogOptions::default();
        let flag = |v: &str| v == "true" || v == "1";
        for (k, v) in q {
            match k.as_str() {
                "follow" => o.follow = flag(v),
                "previous" => o.previous = flag(v),
                "timestamps" => o.timestamps = flag(v),
                "tailLines" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid tailLines {v:?}"))?;
                    if n >= 0 {
                        o.tail_lines = Some(n as u64);
                    }
                }
                "limitBytes" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid limitBytes {v:?}"))?;
                    if n < 1 {
                        return Err("limitBytes: must be greater than 0".into());
                    }
                    o.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| format!("invalid sinceSeconds {v:?}"))?;
                    if n < 1 {
                        return Err("sinceSeconds: must be greater than 0".into());
                    }
                    o.since = Some(now - chrono::Duration::seconds(n));
                }
                "sinceTime" => {
                    let t = DateTime::parse_from_rfc3339(v)
                        .map_err(|_| format!("invalid sinceTime {v:?}"))?;
                    o.since = Some(t.with_timezone(&Utc));
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

/// Go's RFC3339Nano (trailing zeros of the fraction dropped), as the
/// kubelet prints timestamps.
pub fn rfc3339_nano(t: DateTime<Utc>) -> String {
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Turns CRI records into the bytes the client sees, applying `since`,
/// `timestamps` and `limitBytes`. `None` once the byte limit is reached.
pub struct Formatter {
    opts: LogOptions,
    written: u64,
}

impl Formatter {
    pub fn new(opts: LogOptions) -> Self {
        Formatter { opts, written: 0 }
    }

    pub fn done(&self) -> bool {
        self.opts
            .limit_bytes
            .is_some_and(|limit| self.written >= limit)
    }

    /// Format one record (a line without its newline); appends to `out`.
    pub fn push(&mut self, line: &str, out: &mut Vec<u8>) {
        if self.done() {
            return;
        }
        let Some(rec) = parse_record(line) else {
            return;
        };
        if self.opts.since.is_some_and(|s| rec.timestamp < s) {
            return;
        }
        let start = out.len();
        if self.opts.timestamps {
            out.extend_from_slice(rfc3339_nano(rec.timestamp).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(rec.content.as_bytes());
        if !rec.partial {
            out.push(b'\n');
        }
        let mut n = (out.len() - start) as u64;
        if let Some(limit) = self.opts.limit_bytes {
            let left = limit.saturating_sub(self.written);
            if n > left {
                out.truncate(start + left as usize);
                n = left;
            }
        }
        self.written += n;
    }
}

/// The log files of one container instance, oldest first (`N.log.K` ...
/// `N.log.1`, `N.log`).
pub fn instance_files(current: &Path) -> Vec<PathBuf> {
    let mut rotated = Vec::new();
    for k in 1..100 {
        let mut s = current.as_os_str().to_owned();
        s.push(format!(".{k}"));
        let p = PathBuf::from(s);
        if !p.exists() {
            break;
        }
        rotated.push(p);
    }
    rotated.reverse();
    rotated.push(current.to_path_buf());
    rotated
}

/// The instance numbers with a log file in a container's log dir, ascending.
pub fn instances(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".log")?
                        .parse::<u64>()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// The complete lines of the files, keeping only the last `tail` if
/// given, and the offset just past the last complete line of the last file.
fn read_lines(files: &[PathBuf], tail: Option<u64>) -> (Vec<String>, u64) {
    let mut lines = std::collections::VecDeque::new();
    let mut end = 0u64;
    for f in files {
        let mut buf = Vec::new();
        if std::fs::File::open(f)
            .and_then(|mut file| file.read_to_end(&mut buf))
            .is_err()
        {
            end = 0;
            continue;
        }
        end = 0;
        for line in buf.split_inclusive(|&b| b == b'\n') {
            let Some(line) = line.strip_suffix(b"\n") else {
                break;
            };
            end += line.len() as u64 + 1;
            lines.push_back(String::from_utf8_lossy(line).into_owned());
            if tail.is_some_and(|t| lines.len() as u64 > t) {
                lines.pop_front();
            }
        }
    }
    (lines.into(), end)
}

/// Everything currently logged, formatted, and the offset in the last
/// (live) file to follow from.
pub fn read_all(files: &[PathBuf], fmt: &mut Formatter, tail: Option<u64>) -> (Vec<u8>, u64) {
    let mut out = Vec::new();
    let (lines, end) = read_lines(files, tail);
    for l in lines {
        fmt.push(&l, &mut out);
        if fmt.done() {
            break;
        }
    }
    (out, end)
}

/// Follows `path` from `offset`, sending formatted output until `stopped`
/// says the writer is gone and the file is drained, the limit is reached
/// or `send` fails (client gone). Blocking.
pub fn follow(
    path: &Path,
    offset: u64,
    fmt: &mut Formatter,
    stopped: &dyn Fn() -> bool,
    send: &mut dyn FnMut(Vec<u8>) -> bool,
) {
    follow_lines(path, offset, stopped, &mut |lines| {
        let mut out = Vec::new();
        for l in lines {
            fmt.push(l, &mut out);
        }
        if fmt.done() {
            if !out.is_empty() {
                send(out);
            }
            return false;
        }
        send(out)
    });
}

/// Follows `path` from `offset`, handing complete lines to `on` (an empty
/// slice when idle, so it can check its client) until `stopped` holds and
/// the file is drained, or `on` returns false. Survives rotation. Blocking.
pub fn follow_lines(
    path: &Path,
    mut offset: u64,
    stopped: &dyn Fn() -> bool,
    on: &mut dyn FnMut(&[String]) -> bool,
) {
    let mut partial: Vec<u8> = Vec::new();
    let mut file: Option<std::fs::File> = None;
    let mut ino = 0u64;
    loop {
        if file.is_none() {
            if let Ok(mut f) = std::fs::File::open(path) {
                if f.seek(SeekFrom::Start(offset)).is_ok() {
                    use std::os::unix::fs::MetadataExt;
                    ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
                    file = Some(f);
                }
            }
        }
        // Decide "stopped" before reading, so output written before the
        // stop is read by the pass below.
        let was_stopped = stopped();
        let mut got = false;
        if let Some(f) = file.as_mut() {
            let mut buf = Vec::new();
            if f.read_to_end(&mut buf).is_ok() && !buf.is_empty() {
                got = true;
                offset += buf.len() as u64;
                partial.extend_from_slice(&buf);
                let mut lines = Vec::new();
                while let Some(nl) = partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = partial.drain(..=nl).collect();
                    lines.push(String::from_utf8_lossy(&line[..nl]).into_owned());
                }
                if !lines.is_empty() && !on(&lines) {
                    return;
                }
            }
        }
        if !got {
            // Rotated: finish the renamed file (done above), then reopen.
            use std::os::unix::fs::MetadataExt;
            let now_ino = std::fs::metadata(path).map(|m| m.ino()).unwrap_or(ino);
            if file.is_some() && now_ino != ino {
                file = None;
                offset = 0;
                continue;
            }
            if was_stopped || !on(&[]) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2024-01-01T00:00:01.000000001Z stdout F one\n\
2024-01-01T00:00:02.5Z stderr F two\n\
2024-01-01T00:00:03Z stdout P thr\n\
2024-01-01T00:00:03.1Z stdout F ee\n\
garbage line\n\
2024-01-01T00:00:04Z stdout F four\n";

    fn opts(q: &[(&str, &str)]) -> LogOptions {
        let q: Vec<(String, String)> = q
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let now = DateTime::parse_from_rfc3339("2024-01-01T00:00:05Z")
            .unwrap()
            .with_timezone(&Utc);
        LogOptions::parse(&q, now).unwrap()
    }

    fn render(q: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(&p, LOG).unwrap();
        let o = opts(q);
        let tail = o.tail_lines;
        let mut f = Formatter::new(o);
        String::from_utf8(read_all(&instance_files(&p), &mut f, tail).0).unwrap()
    }

    #[test]
    fn plain_and_partial_lines() {
        assert_eq!(render(&[]), "one\ntwo\nthree\nfour\n");
    }

    #[test]
    fn tail_lines() {
        assert_eq!(render(&[("tailLines", "1")]), "four\n");
        assert_eq!(render(&[("tailLines", "0")]), "");
        assert_eq!(render(&[("tailLines", "-1")]), "one\ntwo\nthree\nfour\n");
    }

    #[test]
    fn since_and_timestamps() {
        assert_eq!(render(&[("sinceSeconds", "2")]), "three\nfour\n");
        assert_eq!(
            render(&[("sinceTime", "2024-01-01T00:00:02Z"), ("timestamps", "true")]),
            "2024-01-01T00:00:02.5Z two\n2024-01-01T00:00:03Z thr2024-01-01T00:00:03.1Z ee\n2024-01-01T00:00:04Z four\n"
        );
    }

    #[test]
    fn limit_bytes() {
        assert_eq!(render(&[("limitBytes", "6")]), "one\ntw");
        assert_eq!(render(&[("limitBytes", "1000")]), "one\ntwo\nthree\nfour\n");
    }

    #[test]
    fn bad_params() {
        let now = Utc::now();
        let q = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(LogOptions::parse(&q("limitBytes", "0"), now).is_err());
        assert!(LogOptions::parse(&q("tailLines", "x"), now).is_err());
        assert!(LogOptions::parse(&q("sinceTime", "yesterday"), now).is_err());
    }

    #[test]
    fn rotated_files_in_order_and_instances() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["0.log", "1.log", "1.log.1", "1.log.2", "x.log"] {
            std::fs::write(dir.path().join(n), "").unwrap();
        }
        assert_eq!(instances(dir.path()), vec![0, 1]);
        let files = instance_files(&dir.path().join("1.log"));
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["1.log.2", "1.log.1", "1.log"]);
    }

    #[test]
    fn follow_reads_appends_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(&p, "2024-01-01T00:00:01Z stdout F a\n").unwrap();
        let p2 = p.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&p2).unwrap();
            f.write_all(b"2024-01-01T00:00:02Z stdout F b\n").unwrap();
        });
        let start = std::time::Instant::now();
        let mut got = Vec::new();
        let mut fmt = Formatter::new(LogOptions::default());
        follow(
            &p,
            0,
            &mut fmt,
            &|| start.elapsed() > Duration::from_millis(400),
            &mut |b| {
                got.extend(b);
                true
            },
        );
        writer.join().unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), "a\nb\n");
    }
}
