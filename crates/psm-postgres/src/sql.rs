//! Every statement the stores run, with the schema name quoted in once at construction.
//!
//! Time is always a parameter (the store's [`Clock`](psm_core::Clock)), never `now()`, so a
//! `ManualClock` moves time for the stores exactly as for the other providers.

/// A session is live at `$now` (`now < expires_at`, or no expiry).
macro_rules! live {
    ($now:literal) => {
        concat!("(expires_at IS NULL OR expires_at > ", $now, ")")
    };
}

const SESSION_COLS: &str = "user_id, permissions, metadata, created_at, updated_at, expires_at";
const USER_COLS: &str = "id, username, email, password_hash, permissions, created_at, updated_at";
const FAMILY_COLS: &str =
    "id, user_id, session_id, current_token, created_at, expires_at, revoked, rotations";

/// The statements of one schema.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) check: String,
    pub(crate) permissions: String,
    pub(crate) get: String,
    pub(crate) upsert: String,
    pub(crate) lock_user: String,
    pub(crate) delete_expired_id: String,
    pub(crate) insert_new: String,
    pub(crate) live_of_user_except: String,
    pub(crate) delete_ids: String,
    pub(crate) invalidate: String,
    pub(crate) update: String,
    pub(crate) extend: String,
    pub(crate) list_user: String,
    pub(crate) list_all: String,
    pub(crate) cleanup: String,
    pub(crate) invalidate_user: String,

    pub(crate) user_insert: String,
    pub(crate) user_get: String,
    pub(crate) user_by_email: String,
    pub(crate) user_update: String,
    pub(crate) user_delete: String,

    pub(crate) family_create: String,
    pub(crate) family_get: String,
    pub(crate) family_rotate: String,
    pub(crate) family_reuse: String,
    pub(crate) family_inspect: String,
    pub(crate) family_revoke: String,
    pub(crate) family_revoke_user: String,
    pub(crate) family_cleanup: String,
    pub(crate) epoch_get: String,
    pub(crate) epoch_bump: String,
}

impl Sql {
    /// The statements for `schema` (already validated as an identifier).
    pub(crate) fn new(schema: &str) -> Self {
        let q = quote_ident(schema);
        let s = format!("{q}.sessions");
        let u = format!("{q}.users");
        let f = format!("{q}.token_families");
        let e = format!("{q}.token_epochs");
        Self {
            check: format!(
                "SELECT $3 = ANY(permissions) FROM {s} WHERE id = $1 AND {}",
                live!("$2")
            ),
            permissions: format!(
                "SELECT permissions FROM {s} WHERE id = $1 AND {}",
                live!("$2")
            ),
            get: format!(
                "SELECT {SESSION_COLS} FROM {s} WHERE id = $1 AND {}",
                live!("$2")
            ),
            upsert: format!(
                "INSERT INTO {s} (id, user_id, permissions, metadata, created_at, updated_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $5, $6) \
                 ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, \
                 permissions = EXCLUDED.permissions, metadata = EXCLUDED.metadata, \
                 created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, \
                 expires_at = EXCLUDED.expires_at"
            ),
            lock_user: "SELECT pg_advisory_xact_lock(hashtextextended($1, $2))".to_owned(),
            delete_expired_id: format!("DELETE FROM {s} WHERE id = $1 AND expires_at <= $2"),
            insert_new: format!(
                "INSERT INTO {s} (id, user_id, permissions, metadata, created_at, updated_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (id) DO NOTHING"
            ),
            live_of_user_except: format!(
                "SELECT id FROM {s} WHERE user_id = $1 AND id <> $2 AND {} ORDER BY created_at, id",
                live!("$3")
            ),
            delete_ids: format!("DELETE FROM {s} WHERE id = ANY($1)"),
            invalidate: format!("DELETE FROM {s} WHERE id = $1 AND {}", live!("$2")),
            update: format!(
                "UPDATE {s} SET permissions = $2, updated_at = $3, expires_at = COALESCE($4, expires_at) \
                 WHERE id = $1 AND {}",
                live!("$3")
            ),
            extend: format!(
                "UPDATE {s} SET expires_at = $2, updated_at = $3 WHERE id = $1 AND {}",
                live!("$3")
            ),
            list_user: format!(
                "SELECT id FROM {s} WHERE user_id = $1 AND {} ORDER BY created_at, id LIMIT $3 OFFSET $4",
                live!("$2")
            ),
            list_all: format!(
                "SELECT id FROM {s} WHERE {} ORDER BY id LIMIT $2 OFFSET $3",
                live!("$1")
            ),
            cleanup: format!("DELETE FROM {s} WHERE expires_at <= $1"),
            invalidate_user: format!("DELETE FROM {s} WHERE user_id = $1 AND {}", live!("$2")),

            user_insert: format!(
                "INSERT INTO {u} (id, username, username_key, email, email_key, password_hash, \
                 permissions, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                 RETURNING {USER_COLS}"
            ),
            user_get: format!("SELECT {USER_COLS} FROM {u} WHERE id = $1"),
            user_by_email: format!("SELECT {USER_COLS} FROM {u} WHERE email_key = $1"),
            user_update: format!(
                "UPDATE {u} SET username = COALESCE($2, username), \
                 username_key = COALESCE($3, username_key), email = COALESCE($4, email), \
                 email_key = COALESCE($5, email_key), password_hash = COALESCE($6, password_hash), \
                 permissions = COALESCE($7, permissions), updated_at = $8 \
                 WHERE id = $1 RETURNING {USER_COLS}"
            ),
            user_delete: format!("DELETE FROM {u} WHERE id = $1"),

            family_create: format!(
                "INSERT INTO {f} AS f (id, user_id, session_id, current_token, consumed, created_at, \
                 expires_at, revoked, rotations) VALUES ($1, $2, $3, $4, '{{}}', $5, $6, false, 0) \
                 ON CONFLICT (id) DO UPDATE SET user_id = EXCLUDED.user_id, \
                 session_id = EXCLUDED.session_id, current_token = EXCLUDED.current_token, \
                 consumed = '{{}}', created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, \
                 revoked = false, rotations = 0 WHERE f.expires_at <= $5 \
                 RETURNING {FAMILY_COLS}"
            ),
            family_get: format!("SELECT {FAMILY_COLS} FROM {f} WHERE id = $1 AND expires_at > $2"),
            family_rotate: format!(
                "UPDATE {f} SET consumed = array_append(consumed, current_token), \
                 current_token = $3, rotations = rotations + 1 \
                 WHERE id = $1 AND current_token = $2 AND NOT revoked AND expires_at > $4 \
                 RETURNING {FAMILY_COLS}"
            ),
            family_reuse: format!(
                "UPDATE {f} SET revoked = true WHERE id = $1 AND $2 = ANY(consumed) \
                 RETURNING {FAMILY_COLS}"
            ),
            family_inspect: format!("SELECT revoked, expires_at > $2 FROM {f} WHERE id = $1"),
            family_revoke: format!(
                "UPDATE {f} SET revoked = true WHERE id = $1 AND NOT revoked AND expires_at > $2"
            ),
            family_revoke_user: format!(
                "UPDATE {f} SET revoked = true WHERE user_id = $1 AND NOT revoked AND expires_at > $2"
            ),
            family_cleanup: format!("DELETE FROM {f} WHERE expires_at <= $1"),
            epoch_get: format!("SELECT epoch FROM {e} WHERE user_id = $1"),
            epoch_bump: format!(
                "INSERT INTO {e} AS e (user_id, epoch) VALUES ($1, 1) \
                 ON CONFLICT (user_id) DO UPDATE SET epoch = e.epoch + 1 RETURNING epoch"
            ),
        }
    }
}

/// `name` as a quoted SQL identifier (`"` doubled).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A stable 64-bit FNV-1a hash (the seed of per-schema advisory lock keys).
pub(crate) fn fnv1a64(bytes: &[u8]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}
