//! `psm export` and `psm import`: sessions as JSON lines, between any two providers.
//!
//! A line holds `session_id`, `user_id`, `permissions`, `metadata`, `created_at`, `updated_at`
//! and `expires_at` (RFC 3339, or null for a session that never expires). Import stores each
//! session with its remaining ttl, counted at the moment it is written, so a session keeps the
//! moment it expires (rounded up to the second); `created_at` and `updated_at` become the
//! import's time (the stores set them), but each user's sessions are written one after another in
//! their exported `created_at` order, so their order (and so `evict_oldest`'s choice) survives.
//!
//! Import reads and validates every line before it writes anything: one bad line, or an id that
//! appears twice, fails the import, naming the line, and changes nothing. Export writes to a new
//! file beside the target (mode 0600) and renames it into place only when complete, after the
//! store opened, so a failed export leaves an earlier file as it was. Export pages through
//! `list_sessions`: on a store others write meanwhile, a session created or ended during the
//! export may be missed (it is a snapshot of nothing).

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, BufWriter, Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use futures::{StreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};
use psm::{
    Clock, Metadata, NewSession, PermissionList, SessionId, SystemClock, Timestamp, Ttl, UserId,
};
use serde::Deserialize;

use crate::{
    CliError,
    cli::{ExportArgs, ImportArgs},
    commands::{sessions::session_line, with_stores},
    exit,
    settings::Settings,
};

/// Ids listed per page while exporting.
const PAGE: u64 = 1000;

/// Sessions written at once while importing.
const IMPORT_CONCURRENCY: usize = 32;

/// Longest line accepted (a session with 4,096 long permissions and 64 KiB of metadata fits).
const MAX_LINE: usize = 4 * 1024 * 1024;

fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} sessions ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn bar(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(message.to_owned());
    bar
}

fn summary(text: &str) -> Result<(), CliError> {
    let mut stderr = std::io::stderr().lock();
    writeln!(stderr, "{text}").map_err(|e| CliError::io("cannot write to standard error", &e))
}

/// Where an export goes: standard output, or a temporary file renamed onto the target.
enum Sink {
    Stdout(BufWriter<std::io::Stdout>),
    File {
        writer: BufWriter<File>,
        temp: PathBuf,
        target: PathBuf,
    },
}

impl Sink {
    fn open(output: Option<&Path>) -> Result<Self, CliError> {
        let Some(target) = output else {
            return Ok(Self::Stdout(BufWriter::new(std::io::stdout())));
        };
        let name = target
            .file_name()
            .ok_or_else(|| CliError::invalid(format!("{} names no file", target.display())))?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".psm-export-{}", std::process::id()));
        let temp = target.with_file_name(temp_name);
        // Sessions are credentials: the file is the owner's alone, whatever was there before.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| CliError::io(&format!("cannot create {}", temp.display()), &e))?;
        Ok(Self::File {
            writer: BufWriter::new(file),
            temp,
            target: target.to_owned(),
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Self::Stdout(w) => w,
            Self::File { writer, .. } => writer,
        }
    }

    /// Flushes; a file is synced and renamed onto its target.
    fn finish(self) -> Result<(), CliError> {
        match self {
            Self::Stdout(mut w) => w
                .flush()
                .map_err(|e| CliError::io("cannot write the export", &e)),
            Self::File {
                writer,
                temp,
                target,
            } => {
                let done = writer
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(|f| f.sync_all())
                    .and_then(|()| std::fs::rename(&temp, &target));
                done.map_err(|e| {
                    let _ = std::fs::remove_file(&temp);
                    CliError::io(&format!("cannot write {}", target.display()), &e)
                })
            }
        }
    }

    /// Removes a half-written temporary file.
    fn abandon(self) {
        if let Self::File { temp, .. } = self {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// `psm export`.
pub(crate) async fn export(settings: &Settings, args: &ExportArgs) -> Result<u8, CliError> {
    with_stores(settings, None, async |stores| {
        let mut sink = Sink::open(args.output.as_deref())?;
        match write_export(stores, &mut sink).await {
            Ok((written, ended)) => {
                sink.finish()?;
                summary(&format!(
                    "exported {written} sessions from {} ({ended} ended during the export)",
                    stores.sessions_provider()
                ))?;
                Ok(exit::OK)
            }
            Err(e) => {
                sink.abandon();
                Err(e)
            }
        }
    })
    .await
}

/// Writes every live session to `sink`; `(written, ended while exporting)`.
async fn write_export(
    stores: &crate::stores::Stores,
    sink: &mut Sink,
) -> Result<(u64, u64), CliError> {
    let m = &stores.manager;
    let progress = spinner("exporting");
    let (mut written, mut ended) = (0u64, 0u64);
    let mut offset = 0;
    loop {
        let ids = m.list_sessions(None, PAGE, offset).await?;
        for id in &ids {
            match m.get_session_info(id.as_str()).await? {
                Some(info) => {
                    let line = session_line(id.as_str(), &info);
                    let w = sink.writer();
                    serde_json::to_writer(&mut *w, &line)
                        .map_err(std::io::Error::other)
                        .and_then(|()| w.write_all(b"\n"))
                        .map_err(|e| CliError::io("cannot write the export", &e))?;
                    written += 1;
                    progress.inc(1);
                }
                None => ended += 1,
            }
        }
        if (ids.len() as u64) < PAGE {
            break;
        }
        offset += PAGE;
    }
    progress.finish_and_clear();
    Ok((written, ended))
}

/// One line of an export, as read back.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    session_id: String,
    user_id: String,
    permissions: Vec<String>,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
    #[serde(default)]
    created_at: Option<Timestamp>,
    #[serde(default)]
    updated_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
}

/// A validated session to store; its ttl is counted when it is written.
struct Record {
    id: SessionId,
    user: UserId,
    permissions: PermissionList,
    metadata: Metadata,
    expires_at: Option<Timestamp>,
    created_at: Option<Timestamp>,
}

impl Record {
    /// The session to store at `now`, or `None` when it has expired by then.
    fn session(&self, now: Timestamp) -> Result<Option<NewSession>, CliError> {
        let ttl = match self.expires_at {
            None => None,
            Some(at) if at <= now => return Ok(None),
            Some(at) => Some(Ttl::from_secs(at.secs_until_ceil(now))?),
        };
        Ok(Some(
            NewSession::new(self.user.clone(), self.permissions.clone())
                .with_ttl(ttl)
                .with_metadata(self.metadata.clone()),
        ))
    }
}

fn parse_line(text: &str, now: Timestamp) -> Result<Option<Record>, String> {
    let line: Line = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let id = SessionId::parse(&line.session_id).map_err(|e| e.to_string())?;
    let user = UserId::parse(&line.user_id).map_err(|e| e.to_string())?;
    let permissions = PermissionList::parse(&line.permissions).map_err(|e| e.to_string())?;
    let metadata = match line.metadata {
        None | Some(serde_json::Value::Null) => Metadata::empty(),
        Some(v) => Metadata::from_value(v).map_err(|e| e.to_string())?,
    };
    // `updated_at` is accepted (exports carry it) but not restored: the store sets it.
    let _ = line.updated_at;
    let record = Record {
        id,
        user,
        permissions,
        metadata,
        expires_at: line.expires_at,
        created_at: line.created_at,
    };
    // A ttl beyond the bounds is refused now, not halfway through the writes.
    match record.session(now) {
        Ok(Some(_)) => Ok(Some(record)),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads and validates every line of `reader`; `(records, expired)`.
fn read_all(reader: impl Read, now: Timestamp) -> Result<(Vec<Record>, u64), CliError> {
    let mut reader = BufReader::new(reader);
    let mut records = Vec::new();
    let mut expired = 0u64;
    let mut buf = Vec::new();
    let mut number = 0u64;
    let mut seen = std::collections::HashMap::new();
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| CliError::io("cannot read the import", &e))?;
        if n == 0 {
            break;
        }
        number += 1;
        if buf.len() > MAX_LINE {
            return Err(CliError::invalid(format!(
                "line {number} is longer than {MAX_LINE} bytes; nothing was imported"
            )));
        }
        let text = std::str::from_utf8(&buf).map_err(|_| {
            CliError::invalid(format!("line {number} is not UTF-8; nothing was imported"))
        })?;
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match parse_line(text, now) {
            Ok(Some(r)) => {
                if let Some(first) = seen.insert(r.id.as_str().to_owned(), number) {
                    return Err(CliError::invalid(format!(
                        "line {number}: session id already on line {first}; nothing was imported"
                    )));
                }
                records.push(r);
            }
            Ok(None) => expired += 1,
            Err(e) => {
                return Err(CliError::invalid(format!(
                    "line {number}: {e}; nothing was imported"
                )));
            }
        }
    }
    Ok((records, expired))
}

/// `psm import`.
pub(crate) async fn import(settings: &Settings, args: &ImportArgs) -> Result<u8, CliError> {
    let (records, mut expired) = match &args.input {
        Some(path) => {
            let file = File::open(path)
                .map_err(|e| CliError::io(&format!("cannot open {}", path.display()), &e))?;
            read_all(file, SystemClock.now())?
        }
        None => read_all(std::io::stdin().lock(), SystemClock.now())?,
    };
    let total = records.len() as u64;
    // Each user's sessions in their exported creation order, so the order survives.
    let mut by_user: std::collections::HashMap<UserId, Vec<Record>> =
        std::collections::HashMap::new();
    for r in records {
        by_user.entry(r.user.clone()).or_default().push(r);
    }
    let mut groups: Vec<Vec<Record>> = by_user.into_values().collect();
    for g in &mut groups {
        g.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.as_str().cmp(b.id.as_str()))
        });
    }
    with_stores(settings, None, async |stores| {
        let store = stores.manager.store().clone();
        let progress = bar(total, "importing");
        let mut results = stream::iter(groups)
            .map(|group| {
                let store = store.clone();
                let progress = progress.clone();
                async move {
                    let (mut imported, mut gone) = (0u64, 0u64);
                    for r in group {
                        // The ttl is counted now, as the session is written.
                        match r.session(SystemClock.now())? {
                            Some(session) => {
                                store.store_permissions(&r.id, session).await?;
                                imported += 1;
                            }
                            None => gone += 1,
                        }
                        progress.inc(1);
                    }
                    Ok::<_, CliError>((imported, gone))
                }
            })
            .buffer_unordered(IMPORT_CONCURRENCY);
        let mut imported = 0u64;
        let mut first_error = None;
        while let Some(result) = results.next().await {
            match result {
                Ok((i, g)) => {
                    imported += i;
                    expired += g;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        progress.finish_and_clear();
        summary(&format!(
            "imported {imported} of {total} sessions into {} ({expired} expired since the export were skipped)",
            stores.sessions_provider()
        ))?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(exit::OK),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_validated_and_expired_ones_skipped() {
        let now = Timestamp::from_unix_secs(1_000_000);
        let ok = r#"{"session_id":"s1","user_id":"u","permissions":["a"],"metadata":{"k":1},"created_at":null,"updated_at":null,"expires_at":"1970-01-12T13:47:30Z"}"#;
        let r = parse_line(ok, now).unwrap().unwrap();
        assert_eq!(r.id.as_str(), "s1");
        let ttl_at =
            |r: &Record, t: Timestamp| r.session(t).unwrap().map(|s| s.ttl.map(Ttl::as_secs));
        assert_eq!(ttl_at(&r, now), Some(Some(50)));
        // Counted when written: ten seconds later, ten seconds less; at the expiry, skipped.
        assert_eq!(
            ttl_at(&r, Timestamp::from_unix_secs(1_000_010)),
            Some(Some(40))
        );
        assert_eq!(ttl_at(&r, Timestamp::from_unix_secs(1_000_050)), None);
        let forever = r#"{"session_id":"s2","user_id":"u","permissions":["a"],"expires_at":null}"#;
        assert_eq!(
            ttl_at(&parse_line(forever, now).unwrap().unwrap(), now),
            Some(None)
        );
        let gone = r#"{"session_id":"s3","user_id":"u","permissions":["a"],"expires_at":"1970-01-01T00:00:01Z"}"#;
        assert!(parse_line(gone, now).unwrap().is_none());
        for bad in [
            "{",
            r#"{"session_id":"bad id","user_id":"u","permissions":["a"],"expires_at":null}"#,
            r#"{"session_id":"s","user_id":"u","permissions":[],"expires_at":null}"#,
            r#"{"session_id":"s","user_id":"u","permissions":["a"],"expires_at":null,"extra":1}"#,
            r#"{"session_id":"s","user_id":"u","permissions":["a"],"metadata":[1],"expires_at":null}"#,
        ] {
            assert!(parse_line(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_repeated_id_fails_the_whole_read_naming_both_lines() {
        let line = "{\"session_id\":\"s1\",\"user_id\":\"u\",\"permissions\":[\"a\"],\"expires_at\":null}\n";
        let e = read_all(
            format!("{line}{line}").as_bytes(),
            Timestamp::from_unix_secs(0),
        )
        .err()
        .unwrap();
        assert!(
            e.to_string()
                .contains("line 2: session id already on line 1"),
            "{e}"
        );
    }

    #[test]
    fn one_bad_line_fails_the_whole_read_naming_it() {
        let input = "{\"session_id\":\"s1\",\"user_id\":\"u\",\"permissions\":[\"a\"],\"expires_at\":null}\n\nnot json\n";
        let e = read_all(input.as_bytes(), Timestamp::from_unix_secs(0))
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("line 3:"), "{e}");
        assert_eq!(e.code(), exit::INVALID);
    }
}
