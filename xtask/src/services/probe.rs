//! Asking whether a Redis or PostgreSQL server answers at a URL, without any client library.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    process::Command,
    time::Duration,
};

use super::{Kind, local};
use crate::util::succeeds;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The host and port of a `scheme://[user[:password]@]host[:port][/path][?query]` URL.
pub(crate) fn host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if let Some(v6) = host_port.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None => default_port,
        };
        return Some((host.to_owned(), port));
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None if host_port.is_empty() => None,
        None => Some((host_port.to_owned(), default_port)),
    }
}

/// Whether the server of `kind` answers at `url`; the error says what went wrong.
pub(crate) fn answers(kind: Kind, url: &str) -> Result<(), String> {
    let (host, port) = host_port(url, kind.default_port())
        .ok_or_else(|| "cannot read host and port".to_owned())?;
    let addr = resolve(&host, port)?;
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| format!("no answer on {addr}: {e}"))?;
    match kind {
        Kind::Redis if url.starts_with("rediss://") => Ok(()),
        Kind::Redis => redis_ping(&mut stream),
        Kind::Postgres => {
            drop(stream);
            postgres_ready(url, &host, port)
        }
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))
}

/// Sends an inline `PING`; a password-protected server answering `-NOAUTH` still counts as answering.
fn redis_ping(stream: &mut TcpStream) -> Result<(), String> {
    stream
        .set_read_timeout(Some(CONNECT_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"PING\r\n")
        .map_err(|e| format!("cannot send PING: {e}"))?;
    let mut buf = [0_u8; 64];
    let n = stream
        .read(&mut buf)
        .map_err(|e| format!("no reply to PING: {e}"))?;
    let reply = String::from_utf8_lossy(&buf[..n]);
    if reply.starts_with("+PONG") || reply.starts_with("-NOAUTH") {
        Ok(())
    } else {
        Err(format!("unexpected reply to PING: {}", reply.trim()))
    }
}

/// Asks `pg_isready` (or `psql -c 'select 1'`) when one is installed; the TCP connect already succeeded.
fn postgres_ready(url: &str, host: &str, port: u16) -> Result<(), String> {
    if let Some(pg_isready) = local::postgres_binary("pg_isready") {
        let port = port.to_string();
        let mut cmd = Command::new(pg_isready);
        cmd.args(["-h", host, "-p", &port, "-d", url, "-t", "3"]);
        return if succeeds(&mut cmd) {
            Ok(())
        } else {
            Err("pg_isready says the server is not accepting connections".to_owned())
        };
    }
    if let Some(psql) = local::postgres_binary("psql") {
        let mut cmd = Command::new(psql);
        cmd.args(["-X", "-q", "-d", url, "-c", "select 1"]);
        return if succeeds(&mut cmd) {
            Ok(())
        } else {
            Err("psql cannot run `select 1`".to_owned())
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_host_and_port_from_urls() {
        let cases = [
            ("redis://127.0.0.1:6379", Some(("127.0.0.1", 6379))),
            ("redis://:secret@cache.local/2", Some(("cache.local", 6379))),
            (
                "postgres://postgres@127.0.0.1:5433/test?sslmode=disable",
                Some(("127.0.0.1", 5433)),
            ),
            ("postgres://u:p@w@[::1]:5440/db", Some(("::1", 5440))),
            ("postgres://[::1]/db", Some(("::1", 5432))),
            ("redis://host:notaport", None),
            ("redis://", None),
        ];
        for (url, expected) in cases {
            let default = if url.starts_with("redis") { 6379 } else { 5432 };
            let got = host_port(url, default);
            let expected = expected.map(|(h, p)| (h.to_owned(), p));
            assert_eq!(got, expected, "{url}");
        }
    }

    #[test]
    fn a_closed_port_does_not_answer() {
        let port = crate::util::free_port().unwrap();
        let url = format!("redis://127.0.0.1:{port}");
        assert!(answers(Kind::Redis, &url).is_err());
    }
}
