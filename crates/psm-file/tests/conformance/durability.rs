//! What survives a close and reopen, what a damaged file costs, compaction, backups and name
//! safety.

// Test helpers outside `#[test]` functions fail loudly on purpose; clippy's in-test allowance does not
// reach them, so the whole module opts in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeSet,
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use psm_core::{
    Clock, ConsumeOutcome, Email, ErrorKind, FamilyId, ManualClock, Metadata, NewSession,
    NewTokenFamily, NewUser, Page, PasswordHash, Permission, PermissionList, PermissionRef,
    PermissionStore, SessionIdRef, TokenId, TokenStateStore, Ttl, UserId, UserStore, Username,
};
use psm_file::{FileConfig, FileStorage};
use serde_json::json;

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn sid(s: &str) -> &SessionIdRef {
    SessionIdRef::parse(s).unwrap()
}

fn perm(s: &str) -> &PermissionRef {
    PermissionRef::parse(s).unwrap()
}

fn session(user: &str, perms: &[&str]) -> NewSession {
    NewSession::new(
        UserId::parse(user).unwrap(),
        PermissionList::parse(perms).unwrap(),
    )
}

fn open_at(dir: &Path, clock: &ManualClock) -> FileStorage {
    FileStorage::open_with_clock(FileConfig::new(dir), Arc::new(clock.clone())).unwrap()
}

fn journals(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("journal-"))
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn reopening_restores_every_port_exactly() {
    let tmp = tempdir();
    let clock = ManualClock::at_2024();
    let storage = open_at(tmp.path(), &clock);
    let sessions = storage.sessions();
    let md = Metadata::from_value(json!({"ip": "10.0.0.1", "nested": {"a": [1, 2]}})).unwrap();
    sessions
        .store_permissions(
            sid("s1"),
            session("alice", &["write", "read", "admin"])
                .with_ttl(Some(Ttl::from_secs(100).unwrap()))
                .with_metadata(md.clone()),
        )
        .await
        .unwrap();
    sessions
        .store_permissions(sid("s2"), session("bob", &["read"]))
        .await
        .unwrap();
    sessions
        .store_permissions(
            sid("short"),
            session("bob", &["read"]).with_ttl(Some(Ttl::from_secs(5).unwrap())),
        )
        .await
        .unwrap();
    sessions
        .store_permissions(sid("gone"), session("bob", &["read"]))
        .await
        .unwrap();
    assert!(sessions.invalidate_session(sid("gone")).await.unwrap());
    clock.advance(Duration::from_secs(1));
    assert!(
        sessions
            .update_permissions(sid("s2"), PermissionList::parse(["x", "y"]).unwrap(), None)
            .await
            .unwrap()
    );
    let before_s1 = sessions.get_session_info(sid("s1")).await.unwrap().unwrap();
    let before_s2 = sessions.get_permissions(sid("s2")).await.unwrap().unwrap();

    let users = storage.users();
    let alice = users
        .create_user(NewUser {
            id: UserId::parse("u-alice").unwrap(),
            username: Username::parse("alice").unwrap(),
            email: Email::parse("Alice@Example.com").unwrap(),
            password_hash: PasswordHash::new("$argon2id$v=19$x").unwrap(),
            permissions: vec![Permission::parse("read").unwrap()],
        })
        .await
        .unwrap();
    let tokens = storage.tokens();
    let fam = FamilyId::parse("fam1").unwrap();
    let t1 = TokenId::parse("t1").unwrap();
    let t2 = TokenId::parse("t2").unwrap();
    tokens
        .create_family(NewTokenFamily {
            id: fam.clone(),
            user_id: UserId::parse("u-alice").unwrap(),
            session_id: None,
            first_token: t1.clone(),
            expires_at: clock.now().plus_secs(3600),
        })
        .await
        .unwrap();
    assert!(matches!(
        tokens.consume(&fam, &t1, &t2).await.unwrap(),
        ConsumeOutcome::Rotated(_)
    ));
    let user = UserId::parse("u-alice").unwrap();
    assert_eq!(tokens.bump_user_epoch(&user).await.unwrap(), 1);
    assert_eq!(tokens.bump_user_epoch(&user).await.unwrap(), 2);
    storage.close();
    assert_eq!(
        sessions
            .get_permissions(sid("s1"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::ProviderNotInitialized
    );

    clock.advance(Duration::from_secs(10)); // `short` expires while the store is closed
    let again = open_at(tmp.path(), &clock);
    assert!(again.damage().is_empty(), "{:?}", again.damage());
    let s = again.sessions();
    let s1 = s.get_session_info(sid("s1")).await.unwrap().unwrap();
    assert_eq!(s1.data, before_s1.data);
    assert_eq!(s1.data.permissions.to_strings(), ["write", "read", "admin"]);
    assert_eq!(s1.data.metadata, md);
    assert_eq!(s1.ttl_remaining, Some(89));
    assert_eq!(
        s.get_permissions(sid("s2")).await.unwrap().unwrap(),
        before_s2
    );
    assert!(s.get_permissions(sid("short")).await.unwrap().is_none());
    assert!(s.get_permissions(sid("gone")).await.unwrap().is_none());
    let bob = UserId::parse("bob").unwrap();
    let listed = s
        .list_sessions(Some(&bob), Page::new(10, 0).unwrap())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "the per-user index is rebuilt: {listed:?}");
    assert_eq!(
        again.users().get_user(&alice.id).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        again
            .users()
            .get_user_by_email(&Email::parse("alice@example.com").unwrap())
            .await
            .unwrap()
            .map(|u| u.id),
        Some(alice.id)
    );
    let t = again.tokens();
    assert_eq!(t.user_epoch(&user).await.unwrap(), 2);
    // The rotated-away token is still known as consumed: presenting it again is reuse.
    assert!(matches!(
        t.consume(&fam, &t1, &TokenId::parse("t3").unwrap())
            .await
            .unwrap(),
        ConsumeOutcome::ReuseDetected(_)
    ));
    again.close();
    let third = open_at(tmp.path(), &clock);
    assert!(
        third
            .tokens()
            .get_family(&fam)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
}

#[tokio::test]
async fn clear_all_sessions_is_durable_and_close_reopen_cycles_work() {
    let tmp = tempdir();
    let clock = ManualClock::at_2024();
    let storage = open_at(tmp.path(), &clock);
    let s = storage.sessions();
    for i in 0..50 {
        s.store_permissions(sid(&format!("s{i}")), session("alice", &["read"]))
            .await
            .unwrap();
    }
    assert_eq!(s.clear_all_sessions().await.unwrap(), 50);
    s.store_permissions(sid("after"), session("alice", &["read"]))
        .await
        .unwrap();
    // close and initialize through the port: the directory is reloaded from disk.
    s.close().await.unwrap();
    s.initialize().await.unwrap();
    assert!(s.get_permissions(sid("s1")).await.unwrap().is_none());
    assert!(s.get_permissions(sid("after")).await.unwrap().is_some());
    let stats = s.storage_stats().unwrap();
    assert_eq!(stats.provider, "file");
    assert_eq!(stats.active_sessions, 1);
    assert_eq!(stats.user_index_files, 0);
    assert!(stats.session_files >= 1);
    assert!(stats.total_size_bytes > 0);
    assert_eq!(stats.storage_directory, tmp.path().display().to_string());
}

async fn three_sessions(dir: &Path, clock: &ManualClock) {
    let storage = open_at(dir, clock);
    let s = storage.sessions();
    for id in ["one", "two", "three"] {
        s.store_permissions(sid(id), session("alice", &["read"]))
            .await
            .unwrap();
    }
    storage.close();
}

#[tokio::test]
async fn a_torn_tail_is_reported_cut_and_the_records_before_it_survive() {
    let tmp = tempdir();
    let clock = ManualClock::at_2024();
    three_sessions(tmp.path(), &clock).await;
    let newest = journals(tmp.path()).pop().unwrap();
    let len = fs::metadata(&newest).unwrap().len();
    // Tear the last record in half, as a crash in the middle of a write would.
    fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(len - 20)
        .unwrap();
    let storage = open_at(tmp.path(), &clock);
    let damage = storage.damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(damage[0].reason.contains("tail"), "{damage:?}");
    let s = storage.sessions();
    assert!(s.check_permission(sid("one"), perm("read")).await.unwrap());
    assert!(s.check_permission(sid("two"), perm("read")).await.unwrap());
    assert!(
        !s.check_permission(sid("three"), perm("read"))
            .await
            .unwrap()
    );
    storage.close();
    // The torn bytes were cut off: the next open is clean.
    assert!(open_at(tmp.path(), &clock).damage().is_empty());
}

/// A batch whose commit never reached the disk was never acknowledged: its records are not
/// applied, even when they are whole, and they are cut off.
#[tokio::test]
async fn records_of_a_batch_without_its_commit_are_not_applied() {
    let tmp = tempdir();
    let clock = ManualClock::at_2024();
    three_sessions(tmp.path(), &clock).await;
    let newest = journals(tmp.path()).pop().unwrap();
    let bytes = fs::read(&newest).unwrap();
    // Drop the last frame: the commit of the batch that stored "three".
    let commit_at = bytes
        .windows(4)
        .rposition(|w| w == 0x5053_4D52u32.to_le_bytes())
        .unwrap();
    fs::write(&newest, &bytes[..commit_at]).unwrap();
    let storage = open_at(tmp.path(), &clock);
    let damage = storage.damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(damage[0].reason.contains("torn tail"), "{damage:?}");
    let s = storage.sessions();
    assert!(s.check_permission(sid("two"), perm("read")).await.unwrap());
    assert!(
        !s.check_permission(sid("three"), perm("read"))
            .await
            .unwrap()
    );
    storage.close();
    assert!(open_at(tmp.path(), &clock).damage().is_empty());
}

/// A hole inside the last batch (a record lost while its commit reached the disk: an unsynced
/// write torn by a power cut) drops the whole batch, never part of it: an all-or-nothing
/// operation stays all or nothing.
#[tokio::test]
async fn a_last_batch_with_a_hole_is_dropped_whole() {
    let tmp = tempdir();
    let clock = ManualClock::at_2024();
    three_sessions(tmp.path(), &clock).await;
    let storage = open_at(tmp.path(), &clock);
    let alice = UserId::parse("alice").unwrap();
    assert_eq!(
        storage
            .sessions()
            .invalidate_user_sessions(&alice)
            .await
            .unwrap(),
        3
    );
    storage.close();
    let newest = journals(tmp.path()).pop().unwrap();
    let mut bytes = fs::read(&newest).unwrap();
    // The batch holds three removals and a commit: zero the second removal's frame.
    let mark = 0x5053_4D52u32.to_le_bytes();
    let frames: Vec<usize> = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == mark)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(frames.len(), 4, "three removals and a commit");
    for b in &mut bytes[frames[1]..frames[2]] {
        *b = 0;
    }
    fs::write(&newest, &bytes).unwrap();
    let again = open_at(tmp.path(), &clock);
    let damage = again.damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert!(damage[0].reason.contains("torn tail"), "{damage:?}");
    let s = again.sessions();
    for id in ["one", "two", "three"] {
        assert!(
            s.check_permission(sid(id), perm("read")).await.unwrap(),
            "{id}"
        );
    }
    again.close();
    assert!(
        open_at(tmp.path(), &clock).damage().is_empty(),
        "cut off once"
    );
}

#[tokio::test]
async fn garbage_after_the_last_record_is_a_torn_tail() {
    let tmp = tempdir();
    let clock = ManualClock::at_2024();
    three_sessions(tmp.path(), &clock).await;
    let newest = journals(tmp.path()).pop().unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&newest).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    drop(f);
    let storage = open_at(tmp.path(), &clock);
    assert_eq!(storage.damage().len(), 1);
    let s = storage.sessions();
    for id in ["one", "two", "three"] {
        assert!(
            s.check_permission(sid(id), perm("read")).await.unwrap(),
            "{id}"
        );
    }
}

#[tokio::test]
async fn a_flipped_bit_costs_one_record_and_the_others_survive() {
    let tmp = tempdir();
    let clock = ManualClock::at_2024();
    three_sessions(tmp.path(), &clock).await;
    let newest = journals(tmp.path()).pop().unwrap();
    let mut bytes = fs::read(&newest).unwrap();
    // Flip a bit inside the record of "two" (found by its id bytes).
    let at = bytes.windows(3).position(|w| w == b"two").unwrap();
    bytes[at] ^= 0x01;
    fs::write(&newest, &bytes).unwrap();
    let storage = open_at(tmp.path(), &clock);
    // Reported twice: the damaged frame, and its batch's commit counting one record short.
    let damage = storage.damage();
    assert_eq!(damage.len(), 2, "{damage:?}");
    assert!(
        damage.iter().all(|d| !d.reason.contains("tail")),
        "{damage:?}"
    );
    assert!(
        damage.iter().any(|d| d.reason.contains("batch")),
        "{damage:?}"
    );
    let s = storage.sessions();
    assert!(s.check_permission(sid("one"), perm("read")).await.unwrap());
    assert!(!s.check_permission(sid("two"), perm("read")).await.unwrap());
    assert!(
        s.check_permission(sid("three"), perm("read"))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_file_of_a_newer_format_is_refused_not_overwritten() {
    let tmp = tempdir();
    let clock = ManualClock::at_2024();
    three_sessions(tmp.path(), &clock).await;
    let newest = journals(tmp.path()).pop().unwrap();
    let mut bytes = fs::read(&newest).unwrap();
    bytes[8] = 9; // format version 9
    let crc = crc32(&bytes[..12]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    fs::write(&newest, &bytes).unwrap();
    let e = FileStorage::open_with_clock(FileConfig::new(tmp.path()), Arc::new(clock.clone()))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Serialization);
    assert!(e.message().contains("version 9"), "{e}");
    assert_eq!(
        fs::read(&newest).unwrap(),
        bytes,
        "the file is left as it was"
    );
}

fn crc32(b: &[u8]) -> u32 {
    // CRC-32 (IEEE), bit by bit: the test checks the header the way the format describes it.
    let mut crc = !0u32;
    for &byte in b {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A user for the listing test: username and email derived from the id.
fn listed_user(id: &str, perms: &[&str]) -> NewUser {
    NewUser {
        id: UserId::parse(id).unwrap(),
        username: Username::parse(&format!("user_{id}")).unwrap(),
        email: Email::parse(&format!("{id}@example.com")).unwrap(),
        password_hash: PasswordHash::new("$argon2id$v=19$x").unwrap(),
        permissions: perms
            .iter()
            .map(|p| Permission::parse(p).unwrap())
            .collect(),
    }
}

/// The users listing (order by created_at then id, the permission filter) is rebuilt on open, from
/// the journal and from a snapshot alike.
#[tokio::test]
async fn reopening_rebuilds_the_users_listing_in_order() {
    let tmp = tempdir();
    let clock = ManualClock::at_2024();
    let storage = open_at(tmp.path(), &clock);
    let users = storage.users();
    // c and a share an instant (so the id decides), d and b come later.
    users
        .create_user(listed_user("c", &["read"]))
        .await
        .unwrap();
    users.create_user(listed_user("a", &[])).await.unwrap();
    clock.advance(Duration::from_secs(1));
    users
        .create_user(listed_user("d", &["read"]))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(1));
    users
        .create_user(listed_user("b", &["write"]))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(1));
    let grant = psm_core::UserUpdate {
        permissions: Some(vec![Permission::parse("read").unwrap()]),
        ..Default::default()
    };
    let b = UserId::parse("b").unwrap();
    users.update_user(&b, grant).await.unwrap().unwrap();
    assert!(
        users
            .delete_user(&UserId::parse("d").unwrap())
            .await
            .unwrap()
    );

    let all = Page::new(100, 0).unwrap();
    let ids = |listed: &[psm_core::User]| -> Vec<String> {
        listed.iter().map(|u| u.id.as_str().to_owned()).collect()
    };
    let everyone = users.list_users(None, all).await.unwrap();
    let readers = users.list_users(Some(perm("read")), all).await.unwrap();
    assert_eq!(ids(&everyone), ["a", "c", "b"]);
    assert_eq!(ids(&readers), ["c", "b"]);
    storage.close();

    let again = open_at(tmp.path(), &clock);
    assert!(again.damage().is_empty(), "{:?}", again.damage());
    let u = again.users();
    assert_eq!(
        u.list_users(None, all).await.unwrap(),
        everyone,
        "from the journal"
    );
    assert_eq!(
        u.list_users(Some(perm("read")), all).await.unwrap(),
        readers
    );
    again.compact().await.unwrap();
    again.close();

    let third = open_at(tmp.path(), &clock);
    assert!(third.damage().is_empty(), "{:?}", third.damage());
    let u = third.users();
    assert_eq!(
        u.list_users(None, all).await.unwrap(),
        everyone,
        "from the snapshot"
    );
    assert_eq!(
        u.list_users(Some(perm("read")), all).await.unwrap(),
        readers
    );
    assert_eq!(
        ids(&u.list_users(None, Page::new(1, 1).unwrap()).await.unwrap()),
        ["c"]
    );
}

#[tokio::test]
async fn compaction_keeps_disk_use_proportional_to_live_data() {
    let tmp = tempdir();
    let clock = ManualClock::at_2024();
    let config = FileConfig {
        compact_min_bytes: 64 << 10,
        enable_backup: false,
        ..FileConfig::new(tmp.path())
    };
    let storage = FileStorage::open_with_clock(config.clone(), Arc::new(clock.clone())).unwrap();
    let s = storage.sessions();
    // 20,000 rewrites of the same 100 sessions: about 2 MB of journal for ~10 KB of live data.
    let tasks: Vec<_> = (0..20)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..1000 {
                    let id = format!("s{}", (t * 1000 + i) % 100);
                    let p = format!("v{i}");
                    s.store_permissions(sid(&id), session("alice", &["read", &p]))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    storage.compact().await.unwrap();
    let stats = storage.storage_stats().unwrap();
    assert!(stats.compactions >= 1);
    assert!(
        stats.total_size_bytes < 3 * (64 << 10),
        "{} bytes on disk for 100 sessions",
        stats.total_size_bytes
    );
    let expected: Vec<_> = (0..100)
        .map(|i| {
            s.get_permissions_now(sid(&format!("s{i}")))
                .unwrap()
                .unwrap()
        })
        .collect();
    storage.close();
    let again = FileStorage::open_with_clock(config, Arc::new(clock)).unwrap();
    assert!(again.damage().is_empty());
    for (i, want) in expected.iter().enumerate() {
        let got = again
            .sessions()
            .get_permissions_now(sid(&format!("s{i}")))
            .unwrap()
            .unwrap();
        assert_eq!(&got, want);
    }
}

#[tokio::test]
async fn backups_are_consistent_rotated_and_restorable() {
    let tmp = tempdir();
    let clock = ManualClock::at_2024();
    let config = FileConfig {
        max_backup_files: 2,
        compress_files: true,
        ..FileConfig::new(tmp.path())
    };
    let storage = FileStorage::open_with_clock(config.clone(), Arc::new(clock.clone())).unwrap();
    let s = storage.sessions();
    s.store_permissions(sid("a"), session("alice", &["read"]))
        .await
        .unwrap();
    let first = storage.backup().await.unwrap();
    s.store_permissions(sid("b"), session("alice", &["read"]))
        .await
        .unwrap();
    let second = storage.backup().await.unwrap();
    s.store_permissions(sid("c"), session("alice", &["read"]))
        .await
        .unwrap();
    let third = storage.backup().await.unwrap();
    s.store_permissions(sid("d"), session("alice", &["read"]))
        .await
        .unwrap();
    let kept = storage.list_backups().unwrap();
    assert_eq!(kept, [second.clone(), third], "rotated to max_backup_files");
    assert!(!first.exists());
    let stats = storage.storage_stats().unwrap();
    assert_eq!(stats.backup_files, 2);
    assert!(stats.backup_size_bytes > 0);

    // Restoring needs the directory: refused while the store is open.
    let e = FileStorage::restore_backup(&second, tmp.path(), 0o600).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Concurrency);
    storage.close();
    FileStorage::restore_backup(&second, tmp.path(), 0o600).unwrap();
    let restored = FileStorage::open_with_clock(config, Arc::new(clock)).unwrap();
    assert!(restored.damage().is_empty(), "{:?}", restored.damage());
    let r = restored.sessions();
    for (id, present) in [("a", true), ("b", true), ("c", false), ("d", false)] {
        assert_eq!(
            r.check_permission(sid(id), perm("read")).await.unwrap(),
            present,
            "{id}"
        );
    }
    // Backups taken after a restore are numbered above every older one: listed last, kept.
    r.store_permissions(sid("e"), session("alice", &["read"]))
        .await
        .unwrap();
    let after = restored.backup().await.unwrap();
    assert!(after.exists());
    assert_eq!(restored.list_backups().unwrap().last(), Some(&after));
    let not_a_backup = tmp.path().join("nothing-here");
    fs::create_dir(&not_a_backup).unwrap();
    restored.close();
    let e = FileStorage::restore_backup(&not_a_backup, tmp.path(), 0o600).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProviderConfiguration);

    // A damaged backup is refused and the store is left as it was.
    let journal = fs::read_dir(&after)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".log") && fs::metadata(p).unwrap().len() > 16)
        .unwrap_or_else(|| {
            fs::read_dir(&after)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().ends_with(".psm"))
                .unwrap()
        });
    let mut bytes = fs::read(&journal).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0xff;
    // The backup's files are hard links of the store's: write a copy, not through the link.
    fs::remove_file(&journal).unwrap();
    fs::write(&journal, &bytes).unwrap();
    let e = FileStorage::restore_backup(&after, tmp.path(), 0o600).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ProviderConfiguration, "{e}");
    assert!(e.message().contains("damaged"), "{e}");
    let same = open_at(tmp.path(), &ManualClock::at_2024());
    assert!(
        same.sessions()
            .check_permission(sid("e"), perm("read"))
            .await
            .unwrap()
    );
}

/// What a crash can leave behind is tidied on open; files that are not the store's are not.
#[tokio::test]
async fn leftovers_of_interrupted_work_are_removed_and_strangers_kept() {
    let tmp = tempdir();
    let clock = ManualClock::at_2024();
    let storage = open_at(tmp.path(), &clock);
    storage
        .sessions()
        .store_permissions(sid("a"), session("alice", &["read"]))
        .await
        .unwrap();
    storage.backup().await.unwrap();
    storage.close();
    let root = tmp.path();
    fs::write(
        root.join("snapshot-00000000000000000099.psm.tmp"),
        b"partial",
    )
    .unwrap();
    fs::write(
        root.join("journal-00000000000000000000.log"),
        b"covered by the snapshot",
    )
    .unwrap();
    fs::create_dir_all(root.join("restore-staging/x")).unwrap();
    fs::write(root.join("restore-staging/x/mine"), b"mine").unwrap();
    fs::create_dir_all(root.join("backups/backup-00000000000000000098.tmp")).unwrap();
    fs::create_dir_all(root.join("backups/backup-00000000000000000001.deleting")).unwrap();
    fs::write(root.join("notes.tmp"), b"mine").unwrap();
    fs::write(root.join("README"), b"mine").unwrap();
    let again = open_at(root, &clock);
    assert!(again.damage().is_empty(), "{:?}", again.damage());
    for gone in [
        "snapshot-00000000000000000099.psm.tmp",
        "journal-00000000000000000000.log",
        "backups/backup-00000000000000000098.tmp",
        "backups/backup-00000000000000000001.deleting",
    ] {
        assert!(!root.join(gone).exists(), "{gone} was left");
    }
    assert_eq!(fs::read(root.join("notes.tmp")).unwrap(), b"mine");
    assert_eq!(fs::read(root.join("README")).unwrap(), b"mine");
    assert_eq!(
        fs::read(root.join("restore-staging/x/mine")).unwrap(),
        b"mine"
    );
    assert_eq!(again.list_backups().unwrap().len(), 1);
    assert!(
        again
            .sessions()
            .check_permission(sid("a"), perm("read"))
            .await
            .unwrap()
    );
}

/// Ids and permissions that would be dangerous as file names are stored, found again after a
/// reopen, and create nothing anywhere: the directory holds only the store's own names.
#[tokio::test]
async fn no_file_name_is_built_from_an_id() {
    let sandbox = tempdir();
    let dir = sandbox.path().join("store");
    let clock = ManualClock::at_2024();
    let long_user = "u".repeat(255);
    let long_session = "s".repeat(255);
    let unicode = "ユーザー/../ü\u{202e}";
    let strange_users = [
        "../../x",
        "/abs/x",
        "a\\b",
        "con",
        "NUL.txt",
        ".",
        "..",
        unicode,
        long_user.as_str(),
    ];
    let storage = open_at(&dir, &clock);
    let s = storage.sessions();
    for (i, user) in strange_users.iter().enumerate() {
        let id = format!("s{i}");
        s.store_permissions(
            sid(&id),
            session(user, &["../../etc/passwd", "/abs/x", "a\\b", unicode]),
        )
        .await
        .unwrap();
    }
    s.store_permissions(sid(&long_session), session("con", &["con"]))
        .await
        .unwrap();
    storage.backup().await.unwrap();
    storage.close();

    let names: BTreeSet<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for n in &names {
        assert!(
            n == "LOCK"
                || n == "backups"
                || (n.starts_with("journal-") && n.ends_with(".log"))
                || (n.starts_with("snapshot-") && n.ends_with(".psm")),
            "unexpected name {n:?} in {names:?}"
        );
    }
    let outside: Vec<_> = fs::read_dir(sandbox.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, ["store"], "nothing is created beside the store");
    assert!(!Path::new("/abs/x").exists());

    let again = open_at(&dir, &clock);
    let s = again.sessions();
    for (i, user) in strange_users.iter().enumerate() {
        let got = s
            .get_permissions(sid(&format!("s{i}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.user_id.as_str(), *user);
        assert!(
            s.check_permission(sid(&format!("s{i}")), perm("../../etc/passwd"))
                .await
                .unwrap()
        );
    }
    assert!(
        s.check_permission(sid(&long_session), perm("con"))
            .await
            .unwrap()
    );
    let listed = s
        .list_sessions(
            Some(&UserId::parse("../../x").unwrap()),
            Page::new(10, 0).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}

#[cfg(unix)]
#[tokio::test]
async fn files_get_the_configured_mode_and_an_existing_directory_keeps_its_own() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = tempdir();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let clock = ManualClock::at_2024();

    let fresh = sandbox.path().join("fresh");
    let storage = open_at(&fresh, &clock);
    storage
        .sessions()
        .store_permissions(sid("s"), session("alice", &["read"]))
        .await
        .unwrap();
    let backup = storage.backup().await.unwrap();
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("backups")), 0o700);
    assert_eq!(mode(&backup), 0o700);
    for entry in fs::read_dir(&fresh).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    storage.close();

    let existing = sandbox.path().join("existing");
    fs::create_dir(&existing).unwrap();
    fs::set_permissions(&existing, fs::Permissions::from_mode(0o750)).unwrap();
    let config = FileConfig {
        file_permissions: 0o640,
        ..FileConfig::new(&existing)
    };
    let storage = FileStorage::open_with_clock(config, Arc::new(clock)).unwrap();
    storage
        .sessions()
        .store_permissions(sid("s"), session("alice", &["read"]))
        .await
        .unwrap();
    assert_eq!(mode(&existing), 0o750);
    for entry in fs::read_dir(&existing).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            assert_eq!(mode(&p), 0o640, "{}", p.display());
        }
    }
}

#[tokio::test]
async fn a_second_store_on_one_directory_is_refused_with_the_holder() {
    let tmp = tempdir();
    let clock = ManualClock::at_2024();
    let first = open_at(tmp.path(), &clock);
    let e = FileStorage::open_with_clock(FileConfig::new(tmp.path()), Arc::new(clock.clone()))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Concurrency);
    assert!(e.message().contains("locked"), "{e}");
    assert!(e.message().contains(&std::process::id().to_string()), "{e}");
    first.close();
    let second = open_at(tmp.path(), &clock);
    assert!(second.is_open());
}

/// `initialize` starts the background task: every `cleanup_interval` it removes expired sessions
/// and, when something changed, takes a backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_cleanup_removes_expired_sessions_and_backs_up_changes() {
    let tmp = tempdir();
    let clock = ManualClock::at_2024();
    let config = FileConfig {
        cleanup_interval: Some(Duration::from_millis(100)),
        ..FileConfig::new(tmp.path())
    };
    let storage = FileStorage::open_with_clock(config, Arc::new(clock.clone())).unwrap();
    let s = storage.sessions();
    s.store_permissions(
        sid("short"),
        session("alice", &["read"]).with_ttl(Some(Ttl::from_secs(5).unwrap())),
    )
    .await
    .unwrap();
    s.store_permissions(sid("long"), session("alice", &["read"]))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(6));
    assert_eq!(storage.storage_stats().unwrap().total_cleanup_runs, 0);
    s.initialize().await.unwrap();
    let mut waited = 0;
    while (storage.list_backups().unwrap().is_empty()
        || storage.storage_stats().unwrap().total_sessions_expired == 0)
        && waited < 6000
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    let stats = storage.storage_stats().unwrap();
    assert!(stats.total_cleanup_runs >= 1);
    assert_eq!(stats.total_sessions_expired, 1);
    assert_eq!(stats.active_sessions, 1);
    assert_eq!(storage.list_backups().unwrap().len(), 1);
    // Nothing changed since: later ticks take no new backup.
    let runs = storage.storage_stats().unwrap().total_cleanup_runs;
    let mut waited = 0;
    while storage.storage_stats().unwrap().total_cleanup_runs < runs + 3 && waited < 6000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert!(storage.storage_stats().unwrap().total_cleanup_runs >= runs + 3);
    assert_eq!(storage.list_backups().unwrap().len(), 1);
}

/// A backup taken while writers run holds, for every writer, a version between the last one
/// acknowledged before the backup started and the last one written before it finished; restored,
/// it opens without damage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_writes_restores_cleanly_to_a_point_in_between() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let tmp = tempdir();
    let clock = ManualClock::at_2024();
    let config = FileConfig {
        compact_min_bytes: 16 << 10,
        ..FileConfig::new(tmp.path())
    };
    let storage = FileStorage::open_with_clock(config.clone(), Arc::new(clock.clone())).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..8).map(|_| AtomicU64::new(0)).collect());
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let (s, stop, acked) = (storage.sessions(), stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut v = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    let p = format!("v{v}");
                    s.store_permissions(sid(&format!("w{t}")), session("alice", &[&p]))
                        .await
                        .unwrap();
                    acked[t].store(v, Ordering::Relaxed);
                    v += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    let backup = storage.backup().await.unwrap();
    let after: Vec<u64> = acked.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    storage.close();
    FileStorage::restore_backup(&backup, tmp.path(), 0o600).unwrap();
    let restored = FileStorage::open_with_clock(config, Arc::new(clock)).unwrap();
    assert!(restored.damage().is_empty(), "{:?}", restored.damage());
    for t in 0..8 {
        let data = restored
            .sessions()
            .get_permissions_now(sid(&format!("w{t}")))
            .unwrap();
        let v: u64 = data.map_or(0, |d| d.permissions.to_strings()[0][1..].parse().unwrap());
        assert!(
            before[t] <= v && v <= after[t] + 1,
            "writer {t}: restored v{v}, acknowledged v{} before and v{} after the backup",
            before[t],
            after[t]
        );
    }
}

/// Writes that arrive together share fsyncs: 64 concurrent writers need far fewer journal batches
/// than writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_fsyncs() {
    let tmp = tempdir();
    let storage = open_at(tmp.path(), &ManualClock::at_2024());
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let s = storage.sessions();
            tokio::spawn(async move {
                for i in 0..20 {
                    s.store_permissions(sid(&format!("t{t}_{i}")), session("alice", &["read"]))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = storage.storage_stats().unwrap();
    assert_eq!(stats.journal_records, 64 * 20);
    assert!(
        stats.journal_batches < stats.journal_records / 2,
        "{} batches for {} writes",
        stats.journal_batches,
        stats.journal_records
    );
}

/// Opening and closing without writing leaves no empty journal segments behind.
#[tokio::test]
async fn opening_without_writing_leaves_no_files_behind() {
    let tmp = tempdir();
    let clock = ManualClock::at_2024();
    three_sessions(tmp.path(), &clock).await;
    let before = journals(tmp.path()).len();
    for _ in 0..5 {
        open_at(tmp.path(), &clock).close();
    }
    assert!(journals(tmp.path()).len() <= before + 1);
}

/// `get_storage_stats` has every field of the seed's record.
#[tokio::test]
async fn storage_stats_have_the_seed_fields() {
    let tmp = tempdir();
    let storage = open_at(tmp.path(), &ManualClock::at_2024());
    let v = serde_json::to_value(storage.storage_stats().unwrap()).unwrap();
    for key in [
        "provider",
        "uptime_seconds",
        "total_sessions_created",
        "total_sessions_expired",
        "total_file_operations",
        "total_cleanup_runs",
        "cleanup_interval",
        "enable_backup",
        "max_backup_files",
        "session_files",
        "user_index_files",
        "backup_files",
        "total_size_bytes",
        "backup_size_bytes",
        "storage_directory",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["provider"], "file");
    assert_eq!(v["cleanup_interval"], 300);
    assert_eq!(v["enable_backup"], true);
    assert_eq!(v["max_backup_files"], 5);
}
