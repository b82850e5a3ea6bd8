use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use serde_json::json;

use super::*;

fn cfg(url: &str) -> Value {
    Value::Object(parse_provider_url(url).unwrap().into_config())
}

fn kind(url: &str) -> ErrorKind {
    parse_provider_url(url).unwrap_err().kind()
}

#[test]
fn scheme_names_and_features() {
    let all = [
        (ProviderScheme::Memory, "memory", "memory"),
        (ProviderScheme::File, "file", "file"),
        (ProviderScheme::Redis, "redis", "redis"),
        (ProviderScheme::Rediss, "rediss", "redis"),
        (ProviderScheme::Postgres, "postgres", "postgres"),
    ];
    for (s, scheme, name) in all {
        assert_eq!(s.scheme(), scheme);
        assert_eq!(s.to_string(), scheme);
        assert_eq!(s.provider_name(), name);
        assert_eq!(s.feature(), name);
        assert_eq!(ProviderScheme::from_scheme(scheme), Some(s));
    }
    assert_eq!(
        ProviderScheme::from_scheme("PostgreSQL"),
        Some(ProviderScheme::Postgres)
    );
    assert_eq!(ProviderScheme::from_scheme("mysql"), None);
}

#[test]
fn memory_urls() {
    assert_eq!(cfg("memory://"), json!({}));
    assert_eq!(
        cfg("memory:///?max_sessions=100&x=y"),
        json!({"max_sessions": 100, "x": "y"})
    );
    assert_eq!(
        parse_provider_url("MEMORY://").unwrap().provider(),
        ProviderScheme::Memory
    );
    for bad in [
        "memory://host",
        "memory://:1",
        "memory://u:p@",
        "memory:///path",
        "memory:",
    ] {
        assert_eq!(kind(bad), ErrorKind::ProviderConfiguration, "{bad}");
    }
}

#[test]
fn file_urls() {
    assert_eq!(
        cfg("file:///var/lib/psm"),
        json!({"storage_dir": "/var/lib/psm"})
    );
    assert_eq!(
        cfg("file://localhost/var/lib/psm"),
        json!({"storage_dir": "/var/lib/psm"})
    );
    assert_eq!(
        cfg("file:///data%20dir/%C3%A9"),
        json!({"storage_dir": "/data dir/é"})
    );
    assert_eq!(
        cfg("file:///d?enable_backup=true&max_backup_files=5"),
        json!({"storage_dir": "/d", "enable_backup": true, "max_backup_files": 5})
    );
    assert_eq!(
        cfg("file://./psm-data"),
        json!({"storage_dir": "./psm-data"})
    );
    assert_eq!(
        cfg("file://../up%20one?a=1"),
        json!({"storage_dir": "../up one", "a": 1})
    );
    assert_eq!(cfg("file://."), json!({"storage_dir": "."}));
    for bad in [
        "file://",
        "file:///",
        "file://server/share",
        "file://u:p@/x",
        "file:///x#frag",
        "file://./x#frag",
        "file:///a%00b",
        "file:///%FF",
        "file:///d?storage_dir=/other",
        "file:relative",
    ] {
        assert_eq!(kind(bad), ErrorKind::ProviderConfiguration, "{bad}");
    }
}

#[test]
fn redis_urls() {
    assert_eq!(
        cfg("redis://user:p%40ss%3Aw%2Frd@localhost:6379/3"),
        json!({
            "host": "localhost", "port": 6379, "db": 3, "username": "user", "password": "p@ss:w/rd",
            "url": "redis://user:p%40ss%3Aw%2Frd@localhost:6379/3",
        })
    );
    assert_eq!(
        cfg("rediss://:secret@10.0.0.1?key_prefix=app&socket_timeout=5.0"),
        json!({
            "host": "10.0.0.1", "password": "secret", "ssl": true, "url": "rediss://:secret@10.0.0.1",
            "key_prefix": "app", "socket_timeout": "5.0",
        })
    );
    assert_eq!(cfg("redis://[::1]:7000")["host"], "::1");
    assert_eq!(cfg("redis://h/")["url"], "redis://h/");
    assert_eq!(cfg("redis://"), json!({"url": "redis://"}));
    for bad in [
        "redis://h/x",
        "redis://h/-1",
        "redis://h/+1",
        "redis://h/0/1",
        "redis://h:99999",
        "redis://h?db=1&db=2",
    ] {
        assert_eq!(kind(bad), ErrorKind::ProviderConfiguration, "{bad}");
    }
    assert_eq!(kind("redis://h/1?db=2"), ErrorKind::ProviderConfiguration);
    assert_eq!(
        kind("rediss://h?ssl=false"),
        ErrorKind::ProviderConfiguration
    );
}

#[test]
fn postgres_urls() {
    let expected = json!({
        "host": "db.internal", "port": 5432, "dbname": "my/db", "user": "app", "password": "pa ss",
        "url": "postgresql://app:pa%20ss@db.internal:5432/my%2Fdb", "schema": "psm", "sslmode": "require",
    });
    assert_eq!(
        cfg("postgresql://app:pa%20ss@db.internal:5432/my%2Fdb?schema=psm&sslmode=require"),
        expected
    );
    assert_eq!(
        parse_provider_url("postgres://h/d").unwrap().provider(),
        ProviderScheme::Postgres
    );
    assert_eq!(
        cfg("postgres:///d?host=/run/postgresql"),
        json!({"dbname": "d", "host": "/run/postgresql", "url": "postgres:///d"})
    );
    assert_eq!(kind("postgres://h/a/b"), ErrorKind::ProviderConfiguration);
}

#[test]
fn query_values_are_typed_conservatively() {
    let c = cfg(
        "memory://?a=1&b=-2&c=007&d=%2B3&e=true&f=False&g=&h=18446744073709551615&i=99999999999999999999&j=a+b",
    );
    assert_eq!(
        c,
        json!({
            "a": 1, "b": -2, "c": "007", "d": "+3", "e": true, "f": "False", "g": "",
            "h": 18_446_744_073_709_551_615_u64, "i": "99999999999999999999", "j": "a b",
        })
    );
    assert_eq!(kind("memory://?=x"), ErrorKind::ProviderConfiguration);
}

#[test]
fn unknown_and_malformed() {
    let e = parse_provider_url("mysql://root:hunter2@h/db").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProviderNotSupported);
    assert!(e.message().contains("'mysql'"), "{e}");
    assert!(!e.to_string().contains("hunter2"));
    for bad in [
        "",
        "   ",
        "redis",
        "://x",
        "1redis://h",
        "redis:h",
        "redis:/h",
    ] {
        assert_eq!(kind(bad), ErrorKind::ProviderConfiguration, "{bad:?}");
    }
}

#[test]
fn errors_and_debug_never_show_passwords() {
    for url in [
        "redis://u:hunter2@h:99999",
        "redis://u:hunter2@h/x",
        "redis://u:hunter2@h/0#x",
        "redis://u:hunter2@h?a=1&a=2",
        "postgres://u:hunter2@h/a/b",
        "redis://u:hunter2%FF@h",
    ] {
        let e = parse_provider_url(url).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("hunter2"), "{url}: {e:?}");
    }
    let u =
        parse_provider_url("redis://u:hunter2@h/0?auth_token=t0ken&client_secret=s3cret").unwrap();
    let debug = format!("{u:?}");
    for secret in ["hunter2", "t0ken", "s3cret"] {
        assert!(!debug.contains(secret), "{debug}");
    }
    assert!(debug.contains("redis://u:redacted@h/0"), "{debug}");
}

fn encode(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

proptest! {
    #[test]
    fn never_panics(s in any::<String>()) {
        if let Err(e) = parse_provider_url(&s) {
            prop_assert!(matches!(e.kind(), ErrorKind::ProviderConfiguration | ErrorKind::ProviderNotSupported));
        }
    }

    #[test]
    fn never_panics_on_url_like_input(
        scheme in "(memory|file|redis|rediss|postgres|postgresql|mysql)",
        rest in "[a-z0-9:@/?&=%#.\\[\\]+-]{0,40}",
    ) {
        let _ = parse_provider_url(&format!("{}://{}", scheme, rest));
    }

    #[test]
    fn redis_round_trip(
        tls in any::<bool>(),
        host in "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5})?",
        port in 1u16..,
        db in 0u32..64,
        user in "[ -~]{1,12}",
        password in "\\PC{1,24}",
    ) {
        let scheme = if tls { "rediss" } else { "redis" };
        let url = format!("{}://{}:{}@{}:{}/{}", scheme, encode(&user), encode(&password), host, port, db);
        let parsed = parse_provider_url(&url).unwrap();
        let c = parsed.config();
        prop_assert_eq!(&c["host"], &json!(host));
        prop_assert_eq!(&c["port"], &json!(port));
        prop_assert_eq!(&c["db"], &json!(db));
        prop_assert_eq!(&c["username"], &json!(user));
        prop_assert_eq!(&c["password"], &json!(password));
        prop_assert_eq!(&c["url"], &json!(url));
        prop_assert_eq!(c.get("ssl"), tls.then_some(&Value::Bool(true)));
    }

    #[test]
    fn postgres_round_trip(
        user in "[ -~]{1,12}",
        password in "\\PC{1,24}",
        // `.` and `..` are dot segments that URL parsing removes even when percent-encoded.
        dbname in "\\PC{1,16}".prop_filter("dot segment", |d| d != "." && d != ".."),
    ) {
        let url = format!("postgres://{}:{}@h:5432/{}", encode(&user), encode(&password), encode(&dbname));
        let c = parse_provider_url(&url).unwrap().into_config();
        prop_assert_eq!(&c["user"], &json!(user));
        prop_assert_eq!(&c["password"], &json!(password));
        prop_assert_eq!(&c["dbname"], &json!(dbname));
    }
}
