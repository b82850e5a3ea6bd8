//! Hostile values (quotes, `'; DROP TABLE`, backslashes, Unicode) are stored and returned exactly,
//! within each type's validation rules, and never change the schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use psm_core::{
    Email, Metadata, NewSession, NewUser, Page, PasswordHash, Permission, PermissionList,
    PermissionRef, PermissionStore, SessionIdRef, UserId, UserStore, Username,
};
use psm_postgres::SqlValue;
use serde_json::json;

const USER_IDS: &[&str] = &[
    "o'brien",
    "'; DROP TABLE sessions; --",
    "robert'); DROP TABLE users;--",
    "back\\slash\\\\",
    "\"double\" quotes",
    "ユーザー🎉 żółć",
    "$1 $$ dollar $tag$",
    "percent % _ underscore",
];

const PERMISSIONS: &[&str] = &[
    "it's",
    "';DROP/**/TABLE/**/sessions;--",
    "back\\slash",
    "\"quoted\"",
    "权限:読む",
    "{braces,comma}",
    "NULL",
    "a*b?c[d]",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sessions_round_trip_exactly() {
    let storage = common::storage().await;
    let store = storage.sessions();
    let perms = PermissionList::parse(PERMISSIONS.iter().copied()).unwrap();
    let metadata = Metadata::from_value(json!({
        "sql": "'; DROP TABLE sessions; --",
        "quote\"key'": "back\\slash \\\\ \\u0000 literal",
        "unicode": "żółć 日本語 🎉",
        "nul": "\u{0}",
        "nested": { "x'": ["'", "\"", "\\"] },
    }))
    .unwrap();
    for (i, user) in USER_IDS.iter().enumerate() {
        let id = format!("s{i}");
        let s = NewSession::new(UserId::parse(user).unwrap(), perms.clone())
            .with_metadata(metadata.clone());
        store
            .store_permissions(SessionIdRef::parse(&id).unwrap(), s)
            .await
            .unwrap();
    }
    for (i, user) in USER_IDS.iter().enumerate() {
        let id = format!("s{i}");
        let sid = SessionIdRef::parse(&id).unwrap();
        let data = store.get_permissions(sid).await.unwrap().unwrap();
        assert_eq!(data.user_id.as_str(), *user);
        assert_eq!(data.permissions, perms);
        assert_eq!(data.metadata, metadata);
        for p in PERMISSIONS {
            assert!(
                store
                    .check_permission(sid, PermissionRef::parse(p).unwrap())
                    .await
                    .unwrap()
            );
        }
        assert!(
            !store
                .check_permission(sid, PermissionRef::parse("it''s").unwrap())
                .await
                .unwrap()
        );
        let listed = store
            .list_sessions(
                Some(&UserId::parse(user).unwrap()),
                Page::first(10).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(listed.len(), 1, "{user:?}");
        assert_eq!(listed[0].as_str(), id);
    }
    // The prefix-like user id does not match by pattern.
    assert!(
        store
            .list_sessions(
                Some(&UserId::parse("percent %").unwrap()),
                Page::first(10).unwrap()
            )
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .invalidate_user_sessions(&UserId::parse("'; DROP TABLE sessions; --").unwrap())
            .await
            .unwrap(),
        1
    );
    // Every table is still there.
    let n: i64 = storage
        .database()
        .fetch_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
            &[&storage.schema()],
        )
        .await
        .unwrap()
        .unwrap()
        .get(0);
    assert_eq!(n, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_users_round_trip_exactly() {
    let storage = common::storage().await;
    let users = storage.users();
    let emails = [
        "o'brien+'--@example.com".to_owned(),
        "\"quoted\\local\"@example.com".to_owned(),
        "'; DROP TABLE users; --@x.org".replace(' ', "_"),
        "ünïcødé@exämple.com".to_owned(),
    ];
    for (i, email) in emails.iter().enumerate() {
        let user = NewUser {
            id: UserId::parse(USER_IDS[i]).unwrap(),
            username: Username::parse(&format!("user.{i}_x-y")).unwrap(),
            email: Email::parse(email).unwrap(),
            password_hash: PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$J3NhbHQn$aGFzaA'\\")
                .unwrap(),
            permissions: PERMISSIONS
                .iter()
                .map(|p| Permission::parse(p).unwrap())
                .collect(),
        };
        let created = users.create_user(user.clone()).await.unwrap();
        assert_eq!(created.email.as_str(), email);
        let by_email = users
            .get_user_by_email(&Email::parse(&email.to_uppercase()).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_email, created);
        assert_eq!(by_email.id.as_str(), USER_IDS[i]);
        assert_eq!(by_email.password_hash, user.password_hash);
        assert_eq!(by_email.permissions, user.permissions);
        assert_eq!(users.get_user(&user.id).await.unwrap().unwrap(), created);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_query_parameters_are_only_data() {
    let storage = common::storage().await;
    let db = storage.database();
    db.execute("CREATE TABLE notes (body text)", &[])
        .await
        .unwrap();
    for v in USER_IDS.iter().chain(PERMISSIONS) {
        db.execute("INSERT INTO notes (body) VALUES ($1)", &[v])
            .await
            .unwrap();
        let rows = db
            .fetch_json_values(
                "SELECT body FROM notes WHERE body = $1",
                &[SqlValue::from(*v)],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{v:?}");
        assert_eq!(rows[0]["body"], *v);
    }
    let n: i64 = db
        .fetch_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .unwrap()
        .get(0);
    assert_eq!(n, (USER_IDS.len() + PERMISSIONS.len()) as i64);
}

/// SQL that tries to slip a second statement past the statement scanner: dollar quotes glued to
/// identifiers, `E''` escapes, standard strings with backslashes, nested comments, quoted
/// identifiers. Each is either refused or run as exactly the one statement it is; `items` and its
/// rows survive every one of them.
const TRICKS: &[&str] = &[
    "SELECT a$x$; DROP TABLE items; $x$",
    "SELECT 1 AS a$x$; DROP TABLE items; $x$",
    "SELECT 1 AS a$$; DROP TABLE items; $$",
    "SELECT 1 AS é$x$; DROP TABLE items; $x$",
    "SELECT 1 AS x$E'; DROP TABLE items; --'",
    "SELECT $1$; DROP TABLE items; $1$",
    "SELECT '\\'; DROP TABLE items; --'",
    "SELECT E'\\\\'; DROP TABLE items; --'",
    "SELECT xE'\\''; DROP TABLE items; --'",
    "SELECT 1 -- ; \n; DROP TABLE items",
    "SELECT \"a\"\"\"; DROP TABLE items; --\"",
    "SELECT U&'\\0027'; DROP TABLE items; --'",
    "SELECT $x$ $y$ $x$; DROP TABLE items; $y$",
    "SELECT $_$;$_$; DROP TABLE items",
    "SELECT 1;\u{0}; DROP TABLE items",
    "SELECT '\u{0}'",
];

/// Tricks that really are one statement, with the value of the one row's `v`.
fn one_statement() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "SELECT $x$; DROP TABLE items; $x$ AS v",
            json!("; DROP TABLE items; "),
        ),
        (
            "SELECT E'\\'; DROP TABLE items; --' AS v",
            json!("'; DROP TABLE items; --"),
        ),
        (
            "SELECT '\\''; DROP TABLE items; --' AS v",
            json!("\\'; DROP TABLE items; --"),
        ),
        ("SELECT $a$ $b$; $b$ $a$ AS v", json!(" $b$; $b$ ")),
        (
            "SELECT '; DROP TABLE items; --' AS v /* ; */",
            json!("; DROP TABLE items; --"),
        ),
        ("SELECT 1 AS v /* /* */ ; DROP TABLE items; -- */", json!(1)),
        ("SELECT \"v\" FROM (SELECT ';' AS \"v\") AS t;", json!(";")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_scanner_tricks_never_run_a_second_statement() {
    let storage = common::storage().await;
    let db = storage.database();
    db.execute("CREATE TABLE items (id int8 PRIMARY KEY, name text)", &[])
        .await
        .unwrap();
    db.execute("INSERT INTO items VALUES (1, 'one'), (2, 'two')", &[])
        .await
        .unwrap();
    let cache = std::sync::Arc::new(common::cache::TestCache::default());
    let cached = db
        .clone()
        .with_cache(cache, psm_core::Ttl::from_secs(60).unwrap());
    let survives = || async {
        let n: i64 = db
            .fetch_one("SELECT count(*) FROM items", &[])
            .await
            .expect("items must still exist")
            .unwrap()
            .get(0);
        assert_eq!(n, 2);
    };
    for sql in TRICKS {
        let outcomes = [
            db.fetch(sql, &[]).await.map(drop),
            db.fetch_one(sql, &[]).await.map(drop),
            db.execute(sql, &[]).await.map(drop),
            db.fetch_json_values(sql, &[]).await.map(drop),
            cached
                .fetch_json_cached(sql, &[], &psm_postgres::CacheOptions::default())
                .await
                .map(drop),
            // Through a `Query` handle: refused when it is made, or by the server when run.
            match db.query(sql) {
                Ok(q) => q.fetch(&[]).await.map(drop),
                Err(e) => Err(e),
            },
            match cached.query(sql) {
                Ok(q) => q
                    .fetch_json_cached(&[], &psm_postgres::CacheOptions::default())
                    .await
                    .map(drop),
                Err(e) => Err(e),
            },
        ];
        for r in outcomes {
            let e = r.expect_err(sql);
            assert_eq!(e.kind(), psm_core::ErrorKind::Validation, "{sql:?}: {e:?}");
        }
        let tx = db.begin().await.unwrap();
        let e = tx.execute(sql, &[]).await.expect_err(sql);
        assert_eq!(e.kind(), psm_core::ErrorKind::Validation, "{sql:?}: {e:?}");
        tx.rollback().await.unwrap();
        survives().await;
    }
    for (sql, want) in one_statement() {
        let rows = db
            .fetch_json(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql:?}: {e:?}"));
        assert_eq!(rows.len(), 1, "{sql:?}");
        assert_eq!(rows[0]["v"], want, "{sql:?}");
        let query = cached
            .query(sql)
            .unwrap_or_else(|e| panic!("{sql:?}: {e:?}"));
        let rows = query
            .fetch_json_cached(&[], &psm_postgres::CacheOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{sql:?}: {e:?}"));
        assert_eq!(rows[0]["v"], want, "{sql:?}");
        survives().await;
    }
}
