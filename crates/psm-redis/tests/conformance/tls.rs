//! TLS against a live server: a private `redis-server --tls-port` with a certificate signed by a
//! CA generated for the test (with the `openssl` command line tool). `rediss://` works with the
//! CA configured and is refused without it. A redis-server built without TLS fails this test
//! loudly (it does not start with `--tls-port`), it is never skipped.

use std::{path::PathBuf, process::Command, time::Duration};

use psm_core::{ErrorKind, PermissionRef, PermissionStore, SessionIdRef};
use psm_redis::{RedisConfig, RedisStorage};

use crate::common::{
    server::{Server, free_port},
    session,
};

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &PathBuf, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the tls test needs the openssl command line tool to make its certificates");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn certificates() -> TempDir {
    let id = psm_core::util::generate_session_id("tls").unwrap();
    let dir =
        std::env::temp_dir().join(format!("psm-redis-{}-{}", std::process::id(), id.as_str()));
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = TempDir(dir.clone());
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=psm test ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&dir, &csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    tmp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_works_with_the_ca_and_is_refused_without_it() {
    let certs = certificates();
    let path = |f: &str| certs.0.join(f).to_string_lossy().into_owned();
    let port = free_port();
    let _server = Server::start(
        port,
        &[
            "--tls-port",
            "--tls-cert-file",
            &path("server.crt"),
            "--tls-key-file",
            &path("server.key"),
            "--tls-ca-cert-file",
            &path("ca.crt"),
            "--tls-auth-clients",
            "no",
        ],
    );
    let url = format!(
        "rediss://127.0.0.1:{port}?key_prefix=psmtls:&socket_timeout=2&socket_connect_timeout=2&ssl_ca_certs={}",
        path("ca.crt")
    );
    let config = RedisConfig::from_url(&url).unwrap();
    assert!(config.ssl);
    let storage = RedisStorage::connect(config.clone())
        .await
        .expect("rediss:// with the test CA must connect");
    let store = storage.sessions();
    let id = SessionIdRef::parse("tls_session").unwrap();
    store
        .store_permissions(id, session("u", &["read"]))
        .await
        .unwrap();
    assert!(
        store
            .check_permission(id, PermissionRef::parse("read").unwrap())
            .await
            .unwrap()
    );
    assert!(store.invalidate_session(id).await.unwrap());
    storage.close().await.unwrap();

    // Without the CA the server's certificate cannot be verified: refused, never connected.
    let without = RedisConfig {
        ssl_ca_certs: None,
        ..config.clone()
    };
    let r = match RedisStorage::new(without) {
        Ok(s) => tokio::time::timeout(Duration::from_secs(10), s.initialize())
            .await
            .expect("a refused handshake must not hang"),
        Err(e) => Err(e),
    };
    let e = r.expect_err("an unverifiable server certificate must be refused");
    assert!(
        matches!(
            e.kind(),
            ErrorKind::ProviderConnection | ErrorKind::ProviderConfiguration
        ),
        "{e}"
    );
    // Plain redis:// to a TLS port does not work either.
    let plain = RedisConfig {
        ssl: false,
        ..config
    };
    let r = tokio::time::timeout(Duration::from_secs(10), RedisStorage::connect(plain))
        .await
        .expect("a plain connection to a tls port must not hang");
    assert!(r.is_err());
}
