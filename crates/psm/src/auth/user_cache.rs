//! Users cached by email through the `Cache` port: keys, tags and the cached record's encoding.

use psm_core::{CacheKey, CacheTag, Email, PasswordHash, Result, User, UserId};
use serde_json::{Value, json};

/// Encoding version of cached records, so a changed layout is a miss and never a misread.
const VERSION: u64 = 1;

/// The key of the user with `email`: the normalized address itself, which is collision-free; `None`
/// when it would be longer than a cache key may be (such lookups bypass the cache).
pub(crate) fn email_key(email: &Email) -> Option<CacheKey> {
    CacheKey::parse(&format!("psm:user:email:{}", email.normalized())).ok()
}

/// The tag every cached entry of `user` carries, so one `delete_tag` drops them all.
pub(crate) fn user_tag(user: &UserId) -> Result<CacheTag> {
    CacheTag::parse(&format!("user:{}", user.as_str()))
}

pub(crate) fn encode(user: &User) -> Vec<u8> {
    json!({
        "v": VERSION,
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "password_hash": user.password_hash.as_str(),
        "permissions": user.permissions,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    })
    .to_string()
    .into_bytes()
}

/// Decodes a cached record; `None` for anything unexpected (treated as a miss).
pub(crate) fn decode(bytes: &[u8]) -> Option<User> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    if v.get("v")?.as_u64()? != VERSION {
        return None;
    }
    let field = |k: &str| v.get(k).cloned();
    Some(User {
        id: serde_json::from_value(field("id")?).ok()?,
        username: serde_json::from_value(field("username")?).ok()?,
        email: serde_json::from_value(field("email")?).ok()?,
        password_hash: PasswordHash::new(v.get("password_hash")?.as_str()?).ok()?,
        permissions: serde_json::from_value(field("permissions")?).ok()?,
        created_at: serde_json::from_value(field("created_at")?).ok()?,
        updated_at: serde_json::from_value(field("updated_at")?).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use psm_core::{Permission, Timestamp, Username};

    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let user = User {
            id: UserId::parse("user_1").unwrap(),
            username: Username::parse("alice").unwrap(),
            email: Email::parse("Alice@Example.com").unwrap(),
            password_hash: PasswordHash::new("$argon2id$v=19$x").unwrap(),
            permissions: vec![Permission::parse("read").unwrap()],
            created_at: Timestamp::from_unix_secs(1),
            updated_at: Timestamp::from_unix_secs(2),
        };
        assert_eq!(decode(&encode(&user)), Some(user.clone()));
        assert_eq!(decode(b"{}"), None);
        assert_eq!(decode(b"\xff"), None);
        assert_eq!(
            email_key(&user.email).unwrap().as_str(),
            "psm:user:email:alice@example.com"
        );
        assert_eq!(user_tag(&user.id).unwrap().as_str(), "user:user_1");
    }
}
