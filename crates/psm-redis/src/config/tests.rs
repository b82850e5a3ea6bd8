use serde_json::json;

use super::*;
use psm_core::ErrorKind;

fn err(v: Value) -> Error {
    RedisConfig::from_json(&v).expect_err("must fail")
}

#[test]
fn every_seed_key_is_read() {
    let c = RedisConfig::from_json(&json!({
        "host": "cache.local", "port": 6380, "db": 3, "username": "app", "password": "s3cret",
        "socket_timeout": 2.5, "socket_connect_timeout": 1, "health_check_interval": 10,
        "retry_on_timeout": false, "decode_responses": true, "max_connections": 8,
        "key_prefix": "app:", "ssl": true, "ssl_cert_reqs": "none", "ssl_ca_certs": "/tmp/ca.pem",
        "client_cache": {"max_entries": 10}, "cluster": false
    }))
    .unwrap();
    assert_eq!((c.host.as_str(), c.port, c.db), ("cache.local", 6380, 3));
    assert_eq!(c.username.as_deref(), Some("app"));
    assert_eq!(c.password.as_deref(), Some("s3cret"));
    assert_eq!(c.socket_timeout, Duration::from_millis(2500));
    assert_eq!(c.socket_connect_timeout, Duration::from_secs(1));
    assert_eq!(c.health_check_interval, Some(Duration::from_secs(10)));
    assert!(!c.retry_on_timeout && c.ssl && !c.cluster);
    assert_eq!(c.pool_size, 8);
    assert_eq!(c.key_prefix, "app:");
    assert_eq!(c.ssl_cert_reqs, SslCertReqs::None);
    assert_eq!(c.ssl_ca_certs, Some(PathBuf::from("/tmp/ca.pem")));
    assert_eq!(
        c.client_cache,
        Some(ClientCacheConfig {
            max_entries: 10,
            ..ClientCacheConfig::default()
        })
    );
    assert_eq!(
        RedisConfig::from_json(&Value::Null).unwrap(),
        RedisConfig::default()
    );
    let on = RedisConfig::from_json(&json!({"client_cache": true})).unwrap();
    assert_eq!(on.client_cache, Some(ClientCacheConfig::default()));
    let off = RedisConfig::from_json(&json!({"health_check_interval": 0})).unwrap();
    assert_eq!(off.health_check_interval, None);
}

#[test]
fn bad_values_and_unknown_keys_name_the_key() {
    for (v, key) in [
        (json!({"port": 0}), "port"),
        (json!({"port": "x"}), "port"),
        (json!({"db": 16}), "db"),
        (json!({"socket_timeout": -1}), "socket_timeout"),
        (json!({"socket_timeout": 0}), "socket_timeout"),
        (json!({"max_connections": 0}), "max_connections"),
        (json!({"decode_responses": false}), "decode_responses"),
        (json!({"key_prefix": ""}), "key_prefix"),
        (json!({"key_prefix": "a{b}"}), "key_prefix"),
        (json!({"key_prefix": "a*"}), "key_prefix"),
        (json!({"key_prefix": "a b"}), "key_prefix"),
        (json!({"ssl_cert_reqs": "maybe"}), "ssl_cert_reqs"),
        (json!({"cluster": "yes"}), "cluster"),
        (json!({"cluster": true, "db": 2}), "db"),
        (json!({"client_cache": {"size": 1}}), "client_cache.size"),
        (json!({"nope": 1}), "nope"),
    ] {
        let e = err(v.clone());
        assert_eq!(e.kind(), ErrorKind::ProviderConfiguration, "{v}");
        assert_eq!(e.detail("key"), Some(key), "{v}: {e}");
    }
    assert_eq!(
        err(json!("redis://x")).kind(),
        ErrorKind::ProviderConfiguration
    );
}

#[test]
fn urls_and_the_parsed_url_map_are_accepted() {
    let c = RedisConfig::from_url(
        "redis://user:p%40ss@10.0.0.1:7000/3?key_prefix=x:&socket_timeout=0.5&client_cache=true",
    )
    .unwrap();
    assert_eq!((c.host.as_str(), c.port, c.db), ("10.0.0.1", 7000, 3));
    assert_eq!(c.username.as_deref(), Some("user"));
    assert_eq!(c.password.as_deref(), Some("p@ss"));
    assert_eq!(c.key_prefix, "x:");
    assert_eq!(c.socket_timeout, Duration::from_millis(500));
    assert!(c.client_cache.is_some());
    let c = RedisConfig::from_url("rediss://h:1/0?cluster=true").unwrap();
    assert!(c.ssl && c.cluster);
    let map = parse_provider_url("redis://user:pw@host:1234/3?key_prefix=x&cluster=false")
        .unwrap()
        .into_config();
    let c = RedisConfig::from_json(&Value::Object(map)).unwrap();
    assert_eq!((c.host.as_str(), c.port, c.db), ("host", 1234, 3));
    let c = RedisConfig::from_json(&json!({"url": "redis://a:1/2", "port": 5})).unwrap();
    assert_eq!((c.host.as_str(), c.port, c.db), ("a", 5, 2));
    assert!(RedisConfig::from_url("postgres://a/b").is_err());
    assert!(RedisConfig::from_url("redis://a/notadb").is_err());
}

#[test]
fn secrets_never_show() {
    let url = "redis://user:hunter2pw@h:1/0?key_prefix=bad{";
    let e = RedisConfig::from_url(url).unwrap_err();
    assert!(!format!("{e} {e:?}").contains("hunter2pw"));
    let c = RedisConfig::from_url("redis://user:hunter2pw@h:1/0").unwrap();
    let dbg = format!("{c:?}");
    assert!(
        !dbg.contains("hunter2pw") && dbg.contains("<redacted>"),
        "{dbg}"
    );
    let e = RedisConfig::from_json(&json!({"password": "hunter2pw", "port": 0})).unwrap_err();
    assert!(!format!("{e} {e:?}").contains("hunter2pw"));
}

#[test]
fn tls_config_builds_for_each_mode() {
    let base = RedisConfig {
        ssl: true,
        ..RedisConfig::default()
    };
    let none = RedisConfig {
        ssl_cert_reqs: SslCertReqs::None,
        ..base.clone()
    };
    assert!(crate::tls::client_config(&none).is_ok());
    let missing = RedisConfig {
        ssl_ca_certs: Some(PathBuf::from("/nonexistent/ca.pem")),
        ..base.clone()
    };
    let e = crate::tls::client_config(&missing).unwrap_err();
    assert_eq!(e.detail("key"), Some("ssl_ca_certs"));
    let dir = std::env::temp_dir().join(format!("psm-redis-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate").unwrap();
    let e = crate::tls::client_config(&RedisConfig {
        ssl_ca_certs: Some(empty),
        ..base.clone()
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProviderConfiguration);
    let _ = std::fs::remove_dir_all(&dir);
    // fred accepts the connector, and building storage validates TLS up front.
    assert!(crate::tls::build_tls(&none).is_ok());
    assert!(crate::RedisStorage::new(missing).is_err());
}

#[test]
fn client_cache_bounds_are_read_and_checked() {
    let c = RedisConfig::from_json(&json!({
        "client_cache": {"max_entries": 10, "max_bytes": 1048576, "max_age": 5}
    }))
    .unwrap();
    let cc = c.client_cache.unwrap();
    assert_eq!(cc.max_bytes, 1_048_576);
    assert_eq!(cc.max_age, Duration::from_secs(5));
    for (v, key) in [
        (
            json!({"client_cache": {"max_bytes": 10}}),
            "client_cache.max_bytes",
        ),
        (
            json!({"client_cache": {"max_age": 0}}),
            "client_cache.max_age",
        ),
    ] {
        let e = err(v);
        assert_eq!(e.kind(), ErrorKind::ProviderConfiguration);
        assert_eq!(e.detail("key"), Some(key));
    }
    // The same rules hold for a configuration built as a struct.
    let built = RedisConfig {
        client_cache: Some(ClientCacheConfig {
            max_bytes: 1,
            ..ClientCacheConfig::default()
        }),
        ..RedisConfig::default()
    };
    assert_eq!(
        built.validate().unwrap_err().detail("key"),
        Some("client_cache.max_bytes")
    );
    let built = RedisConfig {
        health_check_interval: Some(Duration::ZERO),
        ..RedisConfig::default()
    };
    assert_eq!(
        built.validate().unwrap_err().detail("key"),
        Some("health_check_interval")
    );
}
