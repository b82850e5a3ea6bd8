//! `psm export` and `psm import`: sessions as JSON lines, between any two providers.
//!
//! A line holds `session_id`, `user_id`, `permissions`, `metadata`, `created_at`, `updated_at`
//! and `expires_at` (RFC 3339, or null for a session that never expires). Import stores each
//! session with its remaining ttl, counted from the import, so a session keeps the moment it
//! expires; `created_at` and `updated_at` become the import's time (the stores set them).
//!
//! Import reads and validates every line before it writes anything: one bad line fails the
//! import, naming the line, and changes nothing.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, BufWriter, Read, Write},
    os::unix::fs::OpenOptionsExt,
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

/// `psm export`.
pub(crate) async fn export(settings: &Settings, args: &ExportArgs) -> Result<u8, CliError> {
    let mut writer: Box<dyn Write + Send> = match &args.output {
        // Sessions are credentials: the file is the owner's alone.
        Some(path) => Box::new(BufWriter::new(
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| CliError::io(&format!("cannot create {}", path.display()), &e))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout())),
    };
    with_stores(settings, None, async |stores| {
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
                        serde_json::to_writer(&mut writer, &line)
                            .map_err(std::io::Error::other)
                            .and_then(|()| writer.write_all(b"\n"))
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
        writer
            .flush()
            .map_err(|e| CliError::io("cannot write the export", &e))?;
        progress.finish_and_clear();
        summary(&format!(
            "exported {written} sessions from {} ({ended} ended during the export)",
            stores.sessions_provider()
        ))?;
        Ok(exit::OK)
    })
    .await
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

/// A validated session to store.
struct Record {
    id: SessionId,
    session: NewSession,
}

fn parse_line(text: &str, now: Timestamp) -> Result<Option<Record>, String> {
    let line: Line = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let _ = (line.created_at, line.updated_at);
    let id = SessionId::parse(&line.session_id).map_err(|e| e.to_string())?;
    let user = UserId::parse(&line.user_id).map_err(|e| e.to_string())?;
    let permissions = PermissionList::parse(&line.permissions).map_err(|e| e.to_string())?;
    let metadata = match line.metadata {
        None | Some(serde_json::Value::Null) => Metadata::empty(),
        Some(v) => Metadata::from_value(v).map_err(|e| e.to_string())?,
    };
    let ttl = match line.expires_at {
        None => None,
        Some(at) if at <= now => return Ok(None),
        Some(at) => Some(Ttl::from_secs(at.secs_until_ceil(now)).map_err(|e| e.to_string())?),
    };
    Ok(Some(Record {
        id,
        session: NewSession::new(user, permissions)
            .with_ttl(ttl)
            .with_metadata(metadata),
    }))
}

/// Reads and validates every line of `reader`; `(records, expired)`.
fn read_all(reader: impl Read, now: Timestamp) -> Result<(Vec<Record>, u64), CliError> {
    let mut reader = BufReader::new(reader);
    let mut records = Vec::new();
    let mut expired = 0u64;
    let mut buf = Vec::new();
    let mut number = 0u64;
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
            Ok(Some(r)) => records.push(r),
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
    let now = SystemClock.now();
    let (records, expired) = match &args.input {
        Some(path) => {
            let file = File::open(path)
                .map_err(|e| CliError::io(&format!("cannot open {}", path.display()), &e))?;
            read_all(file, now)?
        }
        None => read_all(std::io::stdin().lock(), now)?,
    };
    with_stores(settings, None, async |stores| {
        let store = stores.manager.store().clone();
        let total = records.len() as u64;
        let progress = bar(total, "importing");
        let mut results = stream::iter(records)
            .map(|r| {
                let store = store.clone();
                async move { store.store_permissions(&r.id, r.session).await }
            })
            .buffer_unordered(IMPORT_CONCURRENCY);
        let mut imported = 0u64;
        let mut first_error = None;
        while let Some(result) = results.next().await {
            match result {
                Ok(()) => imported += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
            progress.inc(1);
        }
        progress.finish_and_clear();
        summary(&format!(
            "imported {imported} of {total} sessions into {} ({expired} expired since the export were skipped)",
            stores.sessions_provider()
        ))?;
        match first_error {
            Some(e) => Err(CliError::from(e)),
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
        assert_eq!(r.session.ttl.map(Ttl::as_secs), Some(50));
        let forever = r#"{"session_id":"s2","user_id":"u","permissions":["a"],"expires_at":null}"#;
        assert!(
            parse_line(forever, now)
                .unwrap()
                .unwrap()
                .session
                .ttl
                .is_none()
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
    fn one_bad_line_fails_the_whole_read_naming_it() {
        let input = "{\"session_id\":\"s1\",\"user_id\":\"u\",\"permissions\":[\"a\"],\"expires_at\":null}\n\nnot json\n";
        let e = read_all(input.as_bytes(), Timestamp::from_unix_secs(0))
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("line 3:"), "{e}");
        assert_eq!(e.code(), exit::INVALID);
    }
}
