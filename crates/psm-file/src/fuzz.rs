//! Fuzz properties for the file store's decoders, run by `cargo xtask fuzz`: the file header, the
//! record frames, the record payloads, and a whole store opened over damaged files.
//!
//! Under a plain `cargo test` each property runs a few hundred cases (a few dozen for the ones that
//! open a store); `cargo xtask fuzz` sets `PSM_FUZZ_CASES` and runs exactly the tests under a
//! `fuzz::` path with that many. Whatever the bytes, decoding ends in a value or a typed error,
//! never a panic, and damage to one record never costs another. The configuration parser (from
//! JSON and from a `file://` URL) is fuzzed here too.

use proptest::prelude::*;
use psm_core::testkit::fuzz::{config, config_object};
use psm_core::{
    Email, ErrorKind, FamilyId, Metadata, PasswordHash, Permission, PermissionList, SessionId,
    SessionIdRef, Timestamp, TokenFamily, TokenId, User, UserId, Username,
};
use psm_tables::{FamilyRecord, SessionRecord};
use serde_json::{Value, json};

use crate::{
    FileConfig, FileStorage,
    format::{
        FLAG_COMPRESSED, FileKind, Frames, HEADER_LEN, decode_header, encode_header, push_frame,
    },
    records::{self, Entry},
};

/// The kinds a bad record may be refused with: undecodable bytes, or a decoded field that fails
/// its domain validation.
fn is_record_error(kind: ErrorKind) -> bool {
    kind == ErrorKind::Serialization || kind.is_validation()
}

fn ts() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        any::<i64>().prop_map(Timestamp::from_unix_micros),
        (0_i64..4_000_000_000).prop_map(Timestamp::from_unix_secs),
    ]
}

fn session_record() -> impl Strategy<Value = SessionRecord> {
    (
        "[A-Za-z0-9_-]{1,40}",
        "\\PC{1,20}",
        prop::collection::vec("[a-z:*]{1,12}", 1..5),
        prop::option::of(prop::collection::btree_map("[a-z]{1,4}", "\\PC{0,8}", 0..3)),
        (ts(), ts(), prop::option::of(ts())),
    )
        .prop_map(|(id, user, perms, meta, (created, updated, expires))| {
            let metadata = meta.map_or_else(Metadata::empty, |m| {
                Metadata::from_value(serde_json::to_value(m).unwrap()).unwrap()
            });
            SessionRecord {
                id: SessionId::parse(&id).unwrap(),
                user_id: UserId::parse(&user).unwrap(),
                permissions: PermissionList::parse(&perms).unwrap(),
                metadata,
                created_at: created,
                updated_at: updated,
                expires_at: expires,
            }
        })
}

fn user() -> impl Strategy<Value = User> {
    (
        "[a-z0-9]{1,12}",
        "[a-z0-9._-]{3,20}",
        "[a-z]{1,10}@[a-z]{1,8}\\.[a-z]{2,4}",
        "\\$argon2id\\$[A-Za-z0-9+/$=]{8,40}",
        prop::collection::vec("[a-z:]{1,10}", 0..4),
        (ts(), ts()),
    )
        .prop_map(|(id, name, email, hash, perms, (created, updated))| User {
            id: UserId::parse(&id).unwrap(),
            username: Username::parse(&name).unwrap(),
            email: Email::parse(&email).unwrap(),
            password_hash: PasswordHash::new(&hash).unwrap(),
            permissions: perms
                .iter()
                .map(|p| Permission::parse(p).unwrap())
                .collect(),
            created_at: created,
            updated_at: updated,
        })
}

fn family() -> impl Strategy<Value = FamilyRecord> {
    (
        "[A-Za-z0-9_-]{1,30}",
        "[a-z0-9]{1,12}",
        prop::option::of("[A-Za-z0-9_-]{1,30}"),
        "[A-Za-z0-9_-]{1,30}",
        (ts(), ts(), any::<bool>(), any::<u32>()),
        prop::collection::vec("[A-Za-z0-9_-]{1,30}", 0..4),
    )
        .prop_map(
            |(id, user, session, current, (created, expires, revoked, rotations), consumed)| {
                FamilyRecord {
                    family: TokenFamily {
                        id: FamilyId::parse(&id).unwrap(),
                        user_id: UserId::parse(&user).unwrap(),
                        session_id: session.map(|s| SessionId::parse(&s).unwrap()),
                        current_token: TokenId::parse(&current).unwrap(),
                        created_at: created,
                        expires_at: expires,
                        revoked,
                        rotations,
                    },
                    consumed: consumed
                        .iter()
                        .map(|t| TokenId::parse(t).unwrap())
                        .collect(),
                }
            },
        )
}

/// What one generated record holds; the payload is built from it with the store's own encoder.
#[derive(Debug, Clone)]
enum Rec {
    Session(SessionRecord),
    User(User),
    Family(FamilyRecord),
    /// A removal or epoch record whose id may be anything, valid or not.
    Removed(u8, String),
    Epoch(String, u64),
    Count(u8, u64),
}

fn rec() -> impl Strategy<Value = Rec> {
    prop_oneof![
        3 => session_record().prop_map(Rec::Session),
        1 => user().prop_map(Rec::User),
        1 => family().prop_map(Rec::Family),
        1 => (0_u8..3, "\\PC{0,20}|[a-z0-9]{1,10}").prop_map(|(k, id)| Rec::Removed(k, id)),
        1 => ("\\PC{0,20}", any::<u64>()).prop_map(|(u, e)| Rec::Epoch(u, e)),
        1 => (0_u8..4, any::<u64>()).prop_map(|(k, n)| Rec::Count(k, n)),
    ]
}

/// The payload of `rec`, exactly as the store writes it.
fn payload(rec: &Rec) -> Vec<u8> {
    let mut out = Vec::new();
    match rec {
        Rec::Session(r) => {
            let meta = records::metadata_json(&r.metadata);
            records::encode(&Entry::session(r, &meta), &mut out);
        }
        Rec::User(u) => records::encode(&Entry::user(u), &mut out),
        Rec::Family(f) => records::encode(&Entry::family(f), &mut out),
        Rec::Removed(k, id) => {
            let entry = match k {
                0 => Entry::SessionRemoved(id),
                1 => Entry::UserRemoved(id),
                _ => Entry::FamilyRemoved(id),
            };
            records::encode(&entry, &mut out);
        }
        Rec::Epoch(user, epoch) => records::encode(
            &Entry::Epoch {
                user,
                epoch: *epoch,
            },
            &mut out,
        ),
        Rec::Count(k, n) => {
            let entry = match k {
                0 => Entry::Commit { records: *n },
                1 => Entry::SnapshotStart { sessions: *n },
                2 => Entry::SnapshotEnd { records: *n },
                _ => Entry::SessionsCleared,
            };
            records::encode(&entry, &mut out);
        }
    }
    out
}

/// Whether `rec` holds only valid values (removal and epoch ids are generated freely).
fn is_valid(rec: &Rec) -> bool {
    match rec {
        Rec::Removed(0, id) => SessionId::parse(id).is_ok(),
        Rec::Removed(1, id) | Rec::Epoch(id, _) => UserId::parse(id).is_ok(),
        Rec::Removed(_, id) => FamilyId::parse(id).is_ok(),
        _ => true,
    }
}

/// One change to a byte string: overwrite, flip a bit, insert, delete or truncate.
#[derive(Debug, Clone)]
enum Mutation {
    Set(prop::sample::Index, u8),
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
    Truncate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let i = any::<prop::sample::Index>();
    prop_oneof![
        (i.clone(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (i.clone(), 0_u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (i.clone(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        i.clone().prop_map(Mutation::Delete),
        i.prop_map(Mutation::Truncate),
    ]
}

impl Mutation {
    /// Applies the mutation to `bytes[from..]`, leaving the first `from` bytes alone.
    fn apply(&self, bytes: &mut Vec<u8>, from: usize) {
        let n = bytes.len().saturating_sub(from);
        if n == 0 {
            return;
        }
        match self {
            Self::Set(i, b) => bytes[from + i.index(n)] = *b,
            Self::Flip(i, bit) => bytes[from + i.index(n)] ^= 1 << bit,
            Self::Insert(i, b) => bytes.insert(from + i.index(n + 1), *b),
            Self::Delete(i) => {
                bytes.remove(from + i.index(n));
            }
            Self::Truncate(i) => bytes.truncate(from + i.index(n)),
        }
    }
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn headers(
        bytes in prop::collection::vec(any::<u8>(), 0..40),
        kind in prop::sample::select(vec![FileKind::Journal, FileKind::Snapshot]),
        flags in any::<u8>(),
        bit in 0_usize..HEADER_LEN * 8,
    ) {
        if let Ok(h) = decode_header(&bytes) {
            prop_assert_eq!(&bytes[..HEADER_LEN], &encode_header(h.kind, h.flags)[..]);
        }
        let good = encode_header(kind, flags);
        let h = decode_header(&good).unwrap();
        prop_assert_eq!((h.kind, h.flags), (kind, flags));
        // CRC-32 catches every single-bit error, so no flipped header is read as valid.
        let mut bad = good;
        bad[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(decode_header(&bad).is_err());
        prop_assert!(decode_header(&good[..bit / 8]).is_err());
    }

    #[test]
    fn arbitrary_payloads_are_refused_with_a_typed_error(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            // Variant tags the decoder knows, followed by noise.
            (0_u8..12, prop::collection::vec(any::<u8>(), 0..100)).prop_map(|(tag, mut rest)| {
                rest.insert(0, tag);
                rest
            }),
        ],
    ) {
        if let Err(e) = records::decode(&bytes).and_then(Entry::into_change) {
            prop_assert!(is_record_error(e.kind()), "{:?}: {}", e.kind(), e);
        }
    }

    #[test]
    fn records_round_trip_and_survive_mutation(rec in rec(), m in mutation()) {
        let bytes = payload(&rec);
        let entry = records::decode(&bytes).unwrap();
        // Re-encoding what was decoded gives the same bytes: the format has one spelling.
        let mut again = Vec::new();
        records::encode(&entry, &mut again);
        prop_assert_eq!(&again, &bytes);
        match entry.into_change() {
            Ok(_) => prop_assert!(is_valid(&rec)),
            Err(e) => {
                prop_assert!(!is_valid(&rec));
                prop_assert!(is_record_error(e.kind()));
            }
        }
        let mut mutated = bytes.clone();
        m.apply(&mut mutated, 0);
        if let Err(e) = records::decode(&mutated).and_then(Entry::into_change) {
            prop_assert!(is_record_error(e.kind()), "{:?}: {}", e.kind(), e);
        }
    }

    #[test]
    fn frames_of_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..300), base in any::<u32>()) {
        let base = u64::from(base);
        let mut frames = Frames::new(&body, base);
        let mut total = 0;
        for p in frames.by_ref() {
            total += p.len();
        }
        prop_assert!(total <= body.len());
        prop_assert!(frames.valid_end() <= base + body.len() as u64);
        for d in frames.damage() {
            prop_assert!(d.offset >= base && d.offset + d.len <= base + body.len() as u64);
        }
    }
}

proptest! {
    #![proptest_config(config(4))]

    /// One damaged frame costs that frame only: every other record of the body is read back, in
    /// order.
    #[test]
    fn one_damaged_frame_costs_only_itself(
        recs in prop::collection::vec(rec(), 1..8),
        victim in any::<prop::sample::Index>(),
        m in mutation(),
    ) {
        let payloads: Vec<Vec<u8>> = recs.iter().map(payload).collect();
        let mut body = Vec::new();
        let mut starts = Vec::new();
        for p in &payloads {
            starts.push(body.len());
            prop_assert!(push_frame(&mut body, |o| o.extend_from_slice(p)));
        }
        let read: Vec<&[u8]> = Frames::new(&body, 0).collect();
        prop_assert_eq!(read.len(), payloads.len());
        let k = victim.index(payloads.len());
        let end = starts.get(k + 1).copied().unwrap_or(body.len());
        let mut frame = body[starts[k]..end].to_vec();
        // Truncation of one frame is modelled by deletion inside it: the frames after it stay.
        let m = match m {
            Mutation::Truncate(i) => Mutation::Delete(i),
            m => m,
        };
        m.apply(&mut frame, 0);
        let mut damaged = body[..starts[k]].to_vec();
        damaged.extend_from_slice(&frame);
        damaged.extend_from_slice(&body[end..]);
        let mut frames = Frames::new(&damaged, 0);
        let got: Vec<Vec<u8>> = frames.by_ref().map(<[u8]>::to_vec).collect();
        let mut without = payloads.clone();
        without.remove(k);
        // Either the frame survived (the mutation rewrote a byte to itself, or inserted one after
        // the frame, which is skipped as damage) or exactly that frame is lost.
        if got != payloads {
            prop_assert_eq!(&got, &without);
            prop_assert!(!frames.damage().is_empty());
        }
    }
}

/// A store directory holding one file named `name` with `bytes`.
fn store_with(name: &str, bytes: &[u8]) -> (tempfile::TempDir, FileConfig) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), bytes).unwrap();
    let mut config = FileConfig::new(dir.path());
    config.cleanup_interval = None;
    config.enable_backup = false;
    (dir, config)
}

/// The sessions among `recs`, by id, the last record of each winning.
fn sessions_of(recs: &[Rec]) -> std::collections::BTreeMap<String, SessionRecord> {
    recs.iter()
        .filter_map(|r| match r {
            Rec::Session(s) => Some((s.id.as_str().to_owned(), s.clone())),
            _ => None,
        })
        .collect()
}

/// A journal segment of `recs` as one committed batch.
fn journal(recs: &[Rec]) -> Vec<u8> {
    let mut file = encode_header(FileKind::Journal, 0).to_vec();
    for r in recs {
        push_frame(&mut file, |o| o.extend_from_slice(&payload(r)));
    }
    push_frame(&mut file, |o| {
        records::encode(
            &Entry::Commit {
                records: recs.len() as u64,
            },
            o,
        );
    });
    file
}

/// A compressed snapshot of `recs`: one LZ4 block holding their frames, as compaction writes it.
fn compressed_snapshot(recs: &[Rec]) -> Vec<u8> {
    let mut frames = Vec::new();
    for r in recs {
        push_frame(&mut frames, |o| o.extend_from_slice(&payload(r)));
    }
    push_frame(&mut frames, |o| {
        records::encode(
            &Entry::SnapshotEnd {
                records: recs.len() as u64,
            },
            o,
        );
    });
    let mut file = encode_header(FileKind::Snapshot, FLAG_COMPRESSED).to_vec();
    let packed = lz4_flex::compress_prepend_size(&frames);
    push_frame(&mut file, |o| o.extend_from_slice(&packed));
    file
}

/// Opens the store and reads back every session it holds.
fn open_and_read(config: FileConfig, ids: &[String]) -> psm_core::Result<Vec<Option<String>>> {
    let storage = FileStorage::open(config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = storage.sessions();
    let out = ids
        .iter()
        .map(|id| {
            let id = SessionIdRef::parse(id).unwrap();
            rt.block_on(psm_core::PermissionStore::get_permissions(&store, id))
                .map(|d| d.map(|d| d.user_id.as_str().to_owned()))
        })
        .collect();
    storage.close();
    out
}

proptest! {
    #![proptest_config(config(100))]

    /// A store opened over an intact file holds its sessions; over a damaged one it opens anyway
    /// (damage is skipped and reported) unless the header names another format version, and it
    /// never returns a session the file did not hold.
    #[test]
    fn a_store_opens_over_damaged_files(
        recs in prop::collection::vec(rec(), 0..6),
        compressed in any::<bool>(),
        mutations in prop::collection::vec(mutation(), 0..3),
        garbage in prop::option::weighted(0.1, prop::collection::vec(any::<u8>(), 0..200)),
    ) {
        // Valid records that add state only: removals, and expiry (sessions read back as absent),
        // are not modelled here.
        let recs: Vec<Rec> = recs
            .into_iter()
            .filter(|r| is_valid(r) && !matches!(r, Rec::Count(..) | Rec::Removed(..)))
            .map(|r| match r {
                Rec::Session(mut s) => {
                    s.expires_at = None;
                    Rec::Session(s)
                }
                r => r,
            })
            .collect();
        let (name, mut bytes) = if compressed {
            ("snapshot-00000000000000000001.psm", compressed_snapshot(&recs))
        } else {
            ("journal-00000000000000000001.log", journal(&recs))
        };
        let intact = mutations.is_empty() && garbage.is_none();
        if let Some(g) = &garbage {
            bytes = g.clone();
        }
        for m in &mutations {
            m.apply(&mut bytes, HEADER_LEN);
        }
        let expected = sessions_of(&recs);
        let ids: Vec<String> = expected.keys().cloned().collect();
        let (_dir, config) = store_with(name, &bytes);
        match open_and_read(config, &ids) {
            Ok(found) => {
                for (id, got) in ids.iter().zip(found) {
                    match got {
                        Some(user) => prop_assert_eq!(&user, expected[id].user_id.as_str()),
                        None => prop_assert!(!intact, "session {} lost from an intact file", id),
                    }
                }
            }
            Err(e) => {
                prop_assert!(!intact, "an intact file did not open: {}", e);
                prop_assert_eq!(e.kind(), ErrorKind::Serialization, "{}", e);
            }
        }
    }
}

const CONFIG_KEYS: &[&str] = &[
    "storage_dir",
    "cleanup_interval",
    "enable_backup",
    "max_backup_files",
    "file_permissions",
    "atomic_writes",
    "compress_files",
    "max_sessions",
    "enable_monitoring",
    "shards",
    "compact_min_bytes",
];

fn check_config(result: psm_core::Result<FileConfig>) -> Result<(), TestCaseError> {
    match result {
        Ok(cfg) => {
            prop_assert!(cfg.validate().is_ok());
            prop_assert!(!cfg.storage_dir.as_os_str().is_empty());
            prop_assert!(cfg.file_permissions <= 0o777 && cfg.file_permissions & 0o600 == 0o600);
            prop_assert!((1..=crate::MAX_BACKUP_FILES).contains(&cfg.max_backup_files));
            prop_assert!(cfg.max_sessions != Some(0));
            if let Some(d) = cfg.effective_cleanup_interval() {
                prop_assert!(!d.is_zero() && d.as_secs() <= crate::MAX_CLEANUP_INTERVAL_SECS);
            }
        }
        Err(e) => prop_assert_eq!(e.kind(), ErrorKind::ProviderConfiguration, "{}", e),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn json_configs(v in config_object(CONFIG_KEYS)) {
        check_config(FileConfig::from_json(&v))?;
    }

    #[test]
    fn url_configs(
        path in prop::sample::select(vec!["/var/lib/psm", "./data", "../d", "/", "", "/a%20b", "/%00", "/%FF", "./%2e"]),
        query in prop::collection::vec(
            (prop::sample::select(CONFIG_KEYS), "[a-z/.]{0,5}|-?[0-9]{1,7}|0[0-7]{3}|true|false"),
            0..4,
        ),
    ) {
        let pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let url = format!("file://{path}?{}", pairs.join("&"));
        match psm_core::util::parse_provider_url(&url) {
            Ok(u) => check_config(FileConfig::from_json(&Value::Object(u.into_config())))?,
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::ProviderConfiguration),
        }
    }

    #[test]
    fn file_modes_round_trip(mode in 0_u32..0o10000) {
        let ok = mode <= 0o777 && mode & 0o600 == 0o600;
        for v in [json!(mode), json!(format!("{mode:04o}")), json!(format!("0o{mode:o}"))] {
            match FileConfig::from_json(&json!({ "storage_dir": "/d", "file_permissions": v })) {
                Ok(cfg) => {
                    prop_assert!(ok);
                    prop_assert_eq!(cfg.file_permissions, mode);
                }
                Err(e) => {
                    prop_assert!(!ok);
                    prop_assert_eq!(e.kind(), ErrorKind::ProviderConfiguration);
                }
            }
        }
    }
}
