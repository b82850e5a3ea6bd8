//! The query layer against PostgreSQL: typed and JSON rows, execute counts, transactions,
//! validation, and result caching with TTL and tag invalidation; the cached user lookup.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{sync::Arc, time::Duration};

use common::cache::TestCache;
use psm_core::{
    Cache, CacheTag, Email, ErrorKind, NewUser, PasswordHash, Permission, Ttl, UserId, UserStore,
    UserUpdate, Username,
};
use psm_postgres::{CacheOptions, Database, SqlValue};
use serde_json::json;

async fn db_with_table() -> (common::TestStorage, Database) {
    let storage = common::storage().await;
    let db = storage.database();
    db.execute(
        "CREATE TABLE items (id int8 PRIMARY KEY, name text NOT NULL, score float8, tags text[], \
         doc jsonb, at timestamptz, small int2)",
        &[],
    )
    .await
    .unwrap();
    for (id, name) in [(1_i64, "one"), (2, "two"), (3, "three")] {
        db.execute(
            "INSERT INTO items (id, name, score, tags, doc, at, small) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &id,
                &name,
                &(id as f64 / 2.0),
                &vec![name.to_owned(), "x".to_owned()],
                &json!({ "n": id }),
                &psm_core::Timestamp::from_unix_secs(1_704_067_200 + id).to_offset_date_time(),
                &(id as i16),
            ],
        )
        .await
        .unwrap();
    }
    (storage, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_rows_json_objects_and_fetch_one() {
    let (_s, db) = db_with_table().await;
    let rows = db
        .fetch(
            "SELECT id, name FROM items WHERE id >= $1 ORDER BY id",
            &[&2_i64],
        )
        .await
        .unwrap();
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(2, "two".to_owned()), (3, "three".to_owned())]);

    let objs = db
        .fetch_json("SELECT * FROM items WHERE id = $1", &[&1_i64])
        .await
        .unwrap();
    assert_eq!(objs.len(), 1);
    assert_eq!(
        serde_json::Value::Object(objs[0].clone()),
        json!({
            "id": 1, "name": "one", "score": 0.5, "tags": ["one", "x"], "doc": { "n": 1 },
            "at": "2024-01-01T00:00:01.000000Z", "small": 1,
        })
    );
    let null = db
        .fetch_one_json("SELECT NULL::text AS t, 1 AS one", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(null["t"], serde_json::Value::Null);

    assert!(
        db.fetch_one("SELECT id FROM items WHERE id = $1", &[&99_i64])
            .await
            .unwrap()
            .is_none()
    );
    let one = db
        .fetch_one("SELECT name FROM items WHERE id = $1", &[&3_i64])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.get::<_, String>(0), "three");

    let e = db
        .fetch_json("SELECT 1.5::numeric AS n", &[])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialization);
    assert_eq!(e.detail("column"), Some("n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_counts_rows() {
    let (_s, db) = db_with_table().await;
    assert_eq!(
        db.execute("UPDATE items SET score = 0 WHERE id <= $1", &[&2_i64])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        db.execute("DELETE FROM items WHERE id = $1", &[&42_i64])
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_and_roll_back() {
    let (_s, db) = db_with_table().await;
    let n = db
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute("UPDATE items SET name = 'uno' WHERE id = $1", &[&1_i64])
                    .await?;
                tx.execute("DELETE FROM items WHERE id = $1", &[&2_i64])
                    .await
            })
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    let names: Vec<String> = db
        .fetch("SELECT name FROM items ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["uno", "three"]);

    let e = db
        .transaction(|tx| {
            Box::pin(async move {
                tx.execute("UPDATE items SET name = 'changed' WHERE id = $1", &[&1_i64])
                    .await?;
                // Fails: duplicate primary key; everything must roll back.
                tx.execute("INSERT INTO items (id, name) VALUES ($1, 'dup')", &[&3_i64])
                    .await
            })
        })
        .await
        .unwrap_err();
    assert_ne!(e.kind(), ErrorKind::Validation);
    let name: String = db
        .fetch_one("SELECT name FROM items WHERE id = 1", &[])
        .await
        .unwrap()
        .unwrap()
        .get(0);
    assert_eq!(name, "uno", "the failed transaction must roll back");

    // An explicit transaction dropped unfinished leaves nothing behind.
    let tx = db.begin().await.unwrap();
    tx.execute("DELETE FROM items", &[]).await.unwrap();
    drop(tx);
    let count: i64 = db
        .fetch_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .unwrap()
        .get(0);
    assert_eq!(count, 2);
    let tx = db.begin().await.unwrap();
    tx.execute("DELETE FROM items WHERE id = 3", &[])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        db.fetch("SELECT id FROM items", &[]).await.unwrap().len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_fail_validation_before_io() {
    let (storage, db) = db_with_table().await;
    let e = db
        .fetch("SELECT 1; DROP TABLE items", &[])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation);
    assert!(e.message().contains("more than one statement"), "{e}");
    let e = db.execute("", &[]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation);

    let big = format!("SELECT '{}'", "x".repeat(70_000));
    let e = db.fetch(&big, &[]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation);
    assert!(e.detail("max_bytes").is_some());

    let many: Vec<i64> = (0..1001).collect();
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = many
        .iter()
        .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let e = db.fetch("SELECT 1", &refs).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation);
    assert_eq!(e.detail("max_params"), Some("1000"));

    let e = db
        .fetch(
            "SELECT name FROM items WHERE id = $1 AND name = $2",
            &[&1_i64],
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation);
    assert_eq!(e.detail("expected"), Some("2"));
    assert_eq!(e.detail("given"), Some("1"));

    let e = db.fetch("SELEC 1", &[]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation);
    assert_eq!(e.detail("sqlstate"), Some("42601"));

    let e = db
        .fetch_json_values(
            "SELECT name FROM items WHERE small = $1",
            &[SqlValue::Int(100_000)],
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Validation);
    // The table survived every attempt.
    assert_eq!(
        db.fetch("SELECT id FROM items", &[]).await.unwrap().len(),
        3
    );
    drop(storage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_fetch_is_served_from_the_cache_until_invalidated() {
    let (_s, db) = db_with_table().await;
    let cache = Arc::new(TestCache::default());
    let db = db.with_cache(cache.clone(), Ttl::from_secs(60).unwrap());
    let tag = CacheTag::parse("items").unwrap();
    let opts = CacheOptions::default().tag(tag.clone());
    let sql = "SELECT name FROM items WHERE id = $1";
    let first = db
        .fetch_json_cached(sql, &[SqlValue::Int(1)], &opts)
        .await
        .unwrap();
    assert_eq!(first[0]["name"], "one");
    assert_eq!(cache.hits(), 0);

    // Change the row behind the cache's back: the cached value keeps being served.
    db.execute("UPDATE items SET name = 'changed' WHERE id = 1", &[])
        .await
        .unwrap();
    let second = db
        .fetch_json_cached(sql, &[SqlValue::Int(1)], &opts)
        .await
        .unwrap();
    assert_eq!(second[0]["name"], "one", "a hit must come from the cache");
    assert_eq!(cache.hits(), 1);

    // Other parameters are another key.
    let other = db
        .fetch_json_cached(sql, &[SqlValue::Int(2)], &opts)
        .await
        .unwrap();
    assert_eq!(other[0]["name"], "two");

    // An execute naming the tag drops the cached results.
    db.execute_invalidating(
        "UPDATE items SET name = 'again' WHERE id = $1",
        &[&1_i64],
        &[tag],
    )
    .await
    .unwrap();
    let third = db
        .fetch_json_cached(sql, &[SqlValue::Int(1)], &opts)
        .await
        .unwrap();
    assert_eq!(third[0]["name"], "again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_fetch_expires_after_its_ttl() {
    let (_s, db) = db_with_table().await;
    let cache = Arc::new(TestCache::default());
    let db = db.with_cache(cache.clone(), Ttl::from_secs(3600).unwrap());
    let opts = CacheOptions::ttl(Ttl::from_secs(1).unwrap());
    let sql = "SELECT name FROM items WHERE id = $1";
    db.fetch_json_cached(sql, &[SqlValue::Int(3)], &opts)
        .await
        .unwrap();
    db.execute("UPDATE items SET name = 'later' WHERE id = 3", &[])
        .await
        .unwrap();
    let hit = db
        .fetch_json_cached(sql, &[SqlValue::Int(3)], &opts)
        .await
        .unwrap();
    assert_eq!(hit[0]["name"], "three");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = db
        .fetch_json_cached(sql, &[SqlValue::Int(3)], &opts)
        .await
        .unwrap();
    assert_eq!(
        fresh[0]["name"], "later",
        "an expired entry must be read again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_fetch_without_a_cache_reads_the_database() {
    let (_s, db) = db_with_table().await;
    let sql = "SELECT name FROM items WHERE id = $1";
    let opts = CacheOptions::default();
    db.fetch_json_cached(sql, &[SqlValue::Int(1)], &opts)
        .await
        .unwrap();
    db.execute("UPDATE items SET name = 'direct' WHERE id = 1", &[])
        .await
        .unwrap();
    let rows = db
        .fetch_json_cached(sql, &[SqlValue::Int(1)], &opts)
        .await
        .unwrap();
    assert_eq!(rows[0]["name"], "direct");
}

fn new_user(id: &str, email: &str, name: &str) -> NewUser {
    NewUser {
        id: UserId::parse(id).unwrap(),
        username: Username::parse(name).unwrap(),
        email: Email::parse(email).unwrap(),
        password_hash: PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA").unwrap(),
        permissions: vec![Permission::parse("read").unwrap()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_user_lookup_is_invalidated_on_update_and_delete() {
    let storage = common::storage().await;
    let cache = Arc::new(TestCache::default());
    let users = storage
        .users()
        .with_cache(cache.clone(), Ttl::from_secs(60).unwrap());
    users
        .create_user(new_user("u1", "Alice@Example.com", "alice"))
        .await
        .unwrap();
    let email = Email::parse("alice@example.COM").unwrap();
    let a = users.get_user_by_email(&email).await.unwrap().unwrap();
    let b = users.get_user_by_email(&email).await.unwrap().unwrap();
    assert_eq!(a, b);
    assert_eq!(cache.hits(), 1, "the second lookup must be a cache hit");

    // A change made behind the store's back stays invisible while cached …
    storage
        .database()
        .execute("UPDATE users SET username = 'sneaky' WHERE id = 'u1'", &[])
        .await
        .unwrap();
    let c = users.get_user_by_email(&email).await.unwrap().unwrap();
    assert_eq!(c.username.as_str(), "alice");

    // … and an update through the store drops the entry.
    let update = UserUpdate {
        permissions: Some(vec![Permission::parse("write").unwrap()]),
        ..UserUpdate::default()
    };
    users
        .update_user(&UserId::parse("u1").unwrap(), update)
        .await
        .unwrap();
    let d = users.get_user_by_email(&email).await.unwrap().unwrap();
    assert_eq!(d.username.as_str(), "sneaky");
    assert_eq!(d.permissions, vec![Permission::parse("write").unwrap()]);

    // An email change: the old address finds nobody, even though it was cached.
    let update = UserUpdate {
        email: Some(Email::parse("new@example.com").unwrap()),
        ..UserUpdate::default()
    };
    users
        .update_user(&UserId::parse("u1").unwrap(), update)
        .await
        .unwrap();
    assert!(users.get_user_by_email(&email).await.unwrap().is_none());
    let new = Email::parse("NEW@example.com").unwrap();
    assert!(users.get_user_by_email(&new).await.unwrap().is_some());

    // Delete drops the entry.
    assert!(
        users
            .delete_user(&UserId::parse("u1").unwrap())
            .await
            .unwrap()
    );
    assert!(users.get_user_by_email(&new).await.unwrap().is_none());
}

/// A cached fetch reads the database, then an invalidation runs to completion, and only then does
/// the fetch's cache write land (forced by a gate in the cache). The stale value is written, but no
/// later fetch, through this `Database` or another one sharing the cache, with the SQL text or a
/// `Query` handle, ever returns it. The racing fetch alternates between the two ways in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_racing_an_invalidation_never_serves_stale_rows_later() {
    let (_s, db) = db_with_table().await;
    let cache = Arc::new(common::cache::GatedCache::default());
    let db = db.with_cache(cache.clone(), Ttl::from_secs(600).unwrap());
    let other = db
        .clone()
        .with_namespace(&_s.default_cache_namespace())
        .unwrap();
    let tag = CacheTag::parse("items").unwrap();
    let opts = CacheOptions::default().tag(tag.clone());
    let sql = "SELECT name FROM items WHERE id = $1";
    let (query, other_query) = (db.query(sql).unwrap(), other.query(sql).unwrap());
    for round in 0..4 {
        // Start from a miss (a later round would hit what the one before cached).
        db.invalidate(std::slice::from_ref(&tag)).await.unwrap();
        let armed = cache.arm(":q:");
        let racing = {
            let (db, query, opts) = (db.clone(), query.clone(), opts.clone());
            tokio::spawn(async move {
                let one = [SqlValue::Int(1)];
                if round % 2 == 0 {
                    db.fetch_json_cached(sql, &one, &opts).await.unwrap()
                } else {
                    query.fetch_json_cached(&one, &opts).await.unwrap()
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(30), armed.reached)
            .await
            .expect("the fetch never reached its cache write")
            .unwrap();
        let fresh = format!("fresh {round}");
        db.execute_invalidating(
            "UPDATE items SET name = $2 WHERE id = $1",
            &[&1_i64, &fresh],
            std::slice::from_ref(&tag),
        )
        .await
        .unwrap();
        armed.release.send(()).unwrap();
        let stale = racing.await.unwrap();
        assert_ne!(
            stale[0]["name"], *fresh,
            "the racing fetch read before the update"
        );
        assert_eq!(
            cache.gated_writes.load(std::sync::atomic::Ordering::SeqCst),
            round + 1,
            "the stale value was written after the invalidation"
        );
        for (d, q) in [(&db, &query), (&other, &other_query), (&db, &query)] {
            let one = [SqlValue::Int(1)];
            let rows = d.fetch_json_cached(sql, &one, &opts).await.unwrap();
            assert_eq!(rows[0]["name"], *fresh, "a stale cached row was served");
            let rows = q.fetch_json_cached(&one, &opts).await.unwrap();
            assert_eq!(rows[0]["name"], *fresh, "a stale cached row was served");
        }
    }
}

/// The same race on the cached user lookup: a lookup that read the row before `update_user`
/// writes its entry after it; later lookups still see the update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_lookup_racing_an_update_never_serves_the_old_user_later() {
    let storage = common::storage().await;
    let cache = Arc::new(common::cache::GatedCache::default());
    let users = storage
        .users()
        .with_cache(cache.clone(), Ttl::from_secs(600).unwrap());
    users
        .create_user(new_user("u1", "race@example.com", "before"))
        .await
        .unwrap();
    let email = Email::parse("race@example.com").unwrap();
    let armed = cache.arm(":user_email:");
    let racing = {
        let (users, email) = (users.clone(), email.clone());
        tokio::spawn(async move { users.get_user_by_email(&email).await.unwrap() })
    };
    tokio::time::timeout(Duration::from_secs(30), armed.reached)
        .await
        .expect("the lookup never reached its cache write")
        .unwrap();
    users
        .update_user(
            &UserId::parse("u1").unwrap(),
            UserUpdate {
                username: Some(Username::parse("after").unwrap()),
                ..UserUpdate::default()
            },
        )
        .await
        .unwrap();
    armed.release.send(()).unwrap();
    let stale = racing.await.unwrap().unwrap();
    assert_eq!(stale.username.as_str(), "before");
    assert_eq!(
        cache.gated_writes.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    for _ in 0..2 {
        let u = users.get_user_by_email(&email).await.unwrap().unwrap();
        assert_eq!(u.username.as_str(), "after", "the old user was served");
    }
}

/// Hits never return another query's rows or rows another process replaced: a value written by
/// another `Database` (its own memo) is read afresh; another query's value, or garbage, under a
/// query's key is a miss that reads the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_return_exactly_this_querys_current_value() {
    let (_s, db) = db_with_table().await;
    let cache = Arc::new(TestCache::default());
    let ttl = Ttl::from_secs(600).unwrap();
    let a = db.clone().with_cache(cache.clone(), ttl);
    let b = db.clone().with_cache(cache.clone(), ttl);
    let opts = CacheOptions::default();
    let sql = "SELECT name FROM items WHERE id = $1";
    let one = [SqlValue::Int(1)];
    let two = [SqlValue::Int(2)];
    assert_eq!(
        a.fetch_json_cached(sql, &one, &opts).await.unwrap()[0]["name"],
        "one"
    );
    assert_eq!(
        a.fetch_json_cached(sql, &one, &opts).await.unwrap()[0]["name"],
        "one"
    );
    let hits = cache.hits();
    assert!(hits >= 1);

    // Another process replaces the value (here: `b`, with a memo of its own).
    db.execute("UPDATE items SET name = 'uno' WHERE id = 1", &[])
        .await
        .unwrap();
    b.invalidate(&[]).await.unwrap();
    let key = a.cache_key(sql, &one, &opts).unwrap().unwrap();
    assert!(cache.delete(&key).await.unwrap());
    assert_eq!(
        b.fetch_json_cached(sql, &one, &opts).await.unwrap()[0]["name"],
        "uno"
    );
    assert_eq!(
        a.fetch_json_cached(sql, &one, &opts).await.unwrap()[0]["name"],
        "uno",
        "a's memo must not outlive the value it decoded"
    );
    assert!(cache.hits() > hits, "that was a hit on b's value");

    // Another query's value under this query's key: refused, the database answers.
    a.fetch_json_cached(sql, &two, &opts).await.unwrap();
    let key_two = a.cache_key(sql, &two, &opts).unwrap().unwrap();
    assert_ne!(key, key_two);
    let foreign = cache.get(&key_two).await.unwrap().unwrap();
    for planted in [foreign, b"garbage".to_vec(), Vec::new()] {
        cache.set(&key, &planted, ttl, &[]).await.unwrap();
        let rows = a.fetch_json_cached(sql, &one, &opts).await.unwrap();
        assert_eq!(
            rows.to_vec(),
            vec![json!({"name": "uno"}).as_object().unwrap().clone()]
        );
        let rows = b.fetch_json_cached(sql, &one, &opts).await.unwrap();
        assert_eq!(rows[0]["name"], "uno");
    }
}

/// The tags are part of the key: one query cached under two tag sets is two entries, and
/// invalidating one tag leaves the other entry alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_query_under_two_tag_sets_is_two_entries() {
    let (_s, db) = db_with_table().await;
    let cache = Arc::new(TestCache::default());
    let db = db.with_cache(cache.clone(), Ttl::from_secs(600).unwrap());
    let (ta, tb) = (CacheTag::parse("a").unwrap(), CacheTag::parse("b").unwrap());
    let (oa, ob) = (
        CacheOptions::default().tag(ta.clone()),
        CacheOptions::default().tag(tb.clone()).tag(ta.clone()),
    );
    let sql = "SELECT name FROM items WHERE id = $1";
    let p = [SqlValue::Int(3)];
    assert_ne!(
        db.cache_key(sql, &p, &oa).unwrap(),
        db.cache_key(sql, &p, &ob).unwrap()
    );
    db.fetch_json_cached(sql, &p, &oa).await.unwrap();
    db.fetch_json_cached(sql, &p, &ob).await.unwrap();
    db.execute("UPDATE items SET name = 'tres' WHERE id = 3", &[])
        .await
        .unwrap();
    let only_b = CacheOptions::default().tag(tb.clone());
    db.fetch_json_cached(sql, &p, &only_b).await.unwrap();
    db.invalidate(&[tb]).await.unwrap();
    assert_eq!(
        db.fetch_json_cached(sql, &p, &oa).await.unwrap()[0]["name"],
        "three"
    );
    assert_eq!(
        db.fetch_json_cached(sql, &p, &ob).await.unwrap()[0]["name"],
        "tres"
    );
    db.invalidate(&[ta]).await.unwrap();
    assert_eq!(
        db.fetch_json_cached(sql, &p, &oa).await.unwrap()[0]["name"],
        "tres"
    );
}

/// A `Query` handle: its SQL is checked once, at creation (nothing is sent for a rejected one);
/// its calls check only their parameters; its cached fetches read and fill the very entry (and
/// memo) the SQL text's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_handle_is_checked_once_and_shares_the_sql_texts_entry() {
    let (_s, db) = db_with_table().await;
    for bad in [
        "",
        "  ",
        "-- only a comment",
        "SELECT 1; DROP TABLE items",
        "SELECT '\0'",
    ] {
        let e = db.query(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Validation, "{bad:?}");
    }
    let big = format!("SELECT '{}'", "x".repeat(70_000));
    assert!(db.query(&big).unwrap_err().detail("max_bytes").is_some());

    let cache = Arc::new(TestCache::default());
    let db = db.with_cache(cache.clone(), Ttl::from_secs(600).unwrap());
    let sql = "SELECT name FROM items WHERE id = $1";
    let q = db.query(sql).unwrap();
    assert_eq!(q.sql(), sql);
    assert_eq!(q.fetch_json(&[&1_i64]).await.unwrap()[0]["name"], "one");
    assert_eq!(q.fetch(&[&2_i64]).await.unwrap().len(), 1);
    assert!(q.fetch_one(&[&9_i64]).await.unwrap().is_none());
    assert_eq!(
        q.fetch_json_values(&[SqlValue::Int(3)]).await.unwrap()[0]["name"],
        "three"
    );

    // Parameters: more than the limit fails before any cache or database read; a count the
    // placeholders do not match fails when the statement is prepared.
    let opts = CacheOptions::default();
    let gets = cache.gets.load(std::sync::atomic::Ordering::SeqCst);
    let many = vec![SqlValue::Int(1); 1001];
    let e = q.fetch_json_cached(&many, &opts).await.unwrap_err();
    assert_eq!(e.detail("max_params"), Some("1000"));
    assert_eq!(cache.gets.load(std::sync::atomic::Ordering::SeqCst), gets);
    let e = q.fetch_json_cached(&[], &opts).await.unwrap_err();
    assert_eq!(e.detail("expected"), Some("1"));
    let e = q.fetch(&[&1_i64, &2_i64]).await.unwrap_err();
    assert_eq!(e.detail("given"), Some("2"));

    // One entry, whichever way it is filled and read.
    let one = [SqlValue::Int(1)];
    assert_eq!(
        q.cache_key(&one, &opts).unwrap(),
        db.cache_key(sql, &one, &opts).unwrap()
    );
    assert_eq!(
        q.fetch_json_cached(&one, &opts).await.unwrap()[0]["name"],
        "one"
    );
    db.execute("UPDATE items SET name = 'changed' WHERE id = 1", &[])
        .await
        .unwrap();
    let hits = cache.hits();
    let again = db.query(sql).unwrap();
    for rows in [
        db.fetch_json_cached(sql, &one, &opts).await.unwrap(),
        q.fetch_json_cached(&one, &opts).await.unwrap(),
        q.clone().fetch_json_cached(&one, &opts).await.unwrap(),
        again.fetch_json_cached(&one, &opts).await.unwrap(),
    ] {
        assert_eq!(rows[0]["name"], "one", "a hit must come from the cache");
    }
    assert_eq!(cache.hits(), hits + 4);
    let two = [SqlValue::Int(2)];
    db.fetch_json_cached(sql, &two, &opts).await.unwrap();
    db.execute("UPDATE items SET name = 'deux' WHERE id = 2", &[])
        .await
        .unwrap();
    assert_eq!(
        q.fetch_json_cached(&two, &opts).await.unwrap()[0]["name"],
        "two"
    );

    // Invalidation through a handle.
    let tag = CacheTag::parse("items").unwrap();
    let tagged = CacheOptions::default().tag(tag.clone());
    assert_eq!(
        q.fetch_json_cached(&one, &tagged).await.unwrap()[0]["name"],
        "changed"
    );
    let update = db
        .query("UPDATE items SET name = $2 WHERE id = $1")
        .unwrap();
    assert_eq!(
        update
            .execute_invalidating(&[&1_i64, &"again"], std::slice::from_ref(&tag))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        q.fetch_json_cached(&one, &tagged).await.unwrap()[0]["name"],
        "again"
    );
    assert_eq!(update.execute(&[&1_i64, &"later"]).await.unwrap(), 1);

    // Without a cache a handle reads the database every time.
    let plain = _s.database().query(sql).unwrap();
    assert_eq!(
        plain.fetch_json_cached(&one, &opts).await.unwrap()[0]["name"],
        "later"
    );
    assert_eq!(plain.cache_key(&one, &opts).unwrap(), None);
    fn is_send<T: Send>(_: &T) {}
    is_send(&q.fetch_json_cached(&one, &opts));
}

/// The memo's rows answer only for the very value they came from: a value under the key with
/// another write nonce (as any other write has), even of the same length, is decoded and checked
/// afresh; so is one of another length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memo_answers_only_for_the_value_its_rows_came_from() {
    let (_s, db) = db_with_table().await;
    let cache = Arc::new(TestCache::default());
    let ttl = Ttl::from_secs(600).unwrap();
    let db = db.with_cache(cache.clone(), ttl);
    let sql = "SELECT name FROM items WHERE id = $1";
    let q = db.query(sql).unwrap();
    let (one, opts) = ([SqlValue::Int(1)], CacheOptions::default());
    assert_eq!(
        q.fetch_json_cached(&one, &opts).await.unwrap()[0]["name"],
        "one"
    );
    let key = q.cache_key(&one, &opts).unwrap().unwrap();
    let stored = cache.get(&key).await.unwrap().unwrap();
    // The row's string as the stored form has it: tag 6, u32 length, bytes.
    let at = |bytes: &[u8], s: &[u8]| {
        bytes
            .windows(s.len())
            .position(|w| w == s)
            .expect("the row's name in the stored value")
    };
    let name = b"\x06\x03\x00\x00\x00one";
    let i = at(&stored, name);

    // Another write of the same length: other rows, another nonce.
    let mut other = stored.clone();
    other[i..i + name.len()].copy_from_slice(b"\x06\x03\x00\x00\x00uno");
    other[5] ^= 0xff;
    cache.set(&key, &other, ttl, &[]).await.unwrap();
    for rows in [
        q.fetch_json_cached(&one, &opts).await.unwrap(),
        db.fetch_json_cached(sql, &one, &opts).await.unwrap(),
    ] {
        assert_eq!(
            rows[0]["name"], "uno",
            "the memo answered for another value"
        );
    }

    // Another length (the head kept): decoded afresh too.
    let mut longer = other[..i].to_vec();
    longer.extend_from_slice(b"\x06\x04\x00\x00\x00unos");
    longer.extend_from_slice(&other[i + name.len()..]);
    cache.set(&key, &longer, ttl, &[]).await.unwrap();
    assert_eq!(
        q.fetch_json_cached(&one, &opts).await.unwrap()[0]["name"],
        "unos"
    );

    // The original value again (its nonce is not the memo's now): decoded afresh.
    cache.set(&key, &stored, ttl, &[]).await.unwrap();
    assert_eq!(
        q.fetch_json_cached(&one, &opts).await.unwrap()[0]["name"],
        "one"
    );
    // Gone: a miss, and the database answers.
    db.execute("UPDATE items SET name = 'eins' WHERE id = 1", &[])
        .await
        .unwrap();
    assert!(cache.delete(&key).await.unwrap());
    assert_eq!(
        q.fetch_json_cached(&one, &opts).await.unwrap()[0]["name"],
        "eins"
    );
}

/// A statement prepared on a pooled connection, then the table it reads altered underneath it: the
/// server answers 0A000 ("cached plan must not change result type") for the cached statement. The
/// query layer prepares it again and answers with the new shape; inside a transaction, where the
/// error has already aborted the transaction, it drops the statement and reports a retryable
/// `Concurrency` error, and the retried transaction works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_changing_shape_under_a_cached_statement_is_prepared_again() {
    common::drop_stale_schemas().await;
    let schema = common::fresh_schema();
    let mut c = common::config(&schema);
    // One connection: every call below reuses its statement cache.
    c.pool_size = 1;
    let storage = psm_postgres::PostgresStorage::connect(c).await.unwrap();
    let db = storage.database();
    db.execute("CREATE TABLE shape (id int8 PRIMARY KEY, a text)", &[])
        .await
        .unwrap();
    db.execute("INSERT INTO shape VALUES (1, 'x')", &[])
        .await
        .unwrap();
    let sql = "SELECT * FROM shape WHERE id = $1";
    let mut added = 0;
    let mut alter = async || {
        added += 1;
        db.execute(
            &format!("ALTER TABLE shape ADD COLUMN c{added} text DEFAULT 'v{added}'"),
            &[],
        )
        .await
        .unwrap();
        format!("c{added}")
    };
    // fetch (all rows), fetch_one, fetch_json_values: each prepared, altered, asked again.
    assert_eq!(db.fetch(sql, &[&1_i64]).await.unwrap()[0].len(), 2);
    let col = alter().await;
    let rows = db.fetch_json(sql, &[&1_i64]).await.unwrap();
    assert_eq!(rows[0][&col], json!("v1"), "{rows:?}");

    let col = alter().await;
    let row = db.fetch_one_json(sql, &[&1_i64]).await.unwrap().unwrap();
    assert_eq!(row[&col], json!("v2"));

    db.fetch_json_values(sql, &[SqlValue::Int(1)])
        .await
        .unwrap();
    let col = alter().await;
    let rows = db
        .fetch_json_values(sql, &[SqlValue::Int(1)])
        .await
        .unwrap();
    assert_eq!(rows[0][&col], json!("v3"));

    // A transaction meeting the stale statement.
    db.fetch(sql, &[&1_i64]).await.unwrap();
    alter().await;
    let tx = db.begin().await.unwrap();
    let e = tx.fetch(sql, &[&1_i64]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Concurrency, "{e:?}");
    assert_eq!(e.detail("sqlstate"), Some("0A000"));
    assert!(e.is_retryable());
    tx.rollback().await.unwrap();
    let tx = db.begin().await.unwrap();
    assert_eq!(tx.fetch(sql, &[&1_i64]).await.unwrap()[0].len(), 6);
    tx.commit().await.unwrap();
}
