//! `psm sessions ...` and `psm check`.

use serde_json::{Value, json};

use crate::{
    CliError,
    cli::{CheckArgs, SessionsCommand},
    commands::{out, out_json, with_stores},
    exit,
    settings::Settings,
};

fn missing(id: &str) -> CliError {
    CliError::not_found(format!("no live session {}", psm::redact_id(id)))
}

/// Runs a `psm sessions` subcommand.
pub(crate) async fn run(settings: &Settings, command: SessionsCommand) -> Result<u8, CliError> {
    if let SessionsCommand::Check(args) = &command {
        return check(settings, args).await;
    }
    with_stores(settings, Some(settings.default_ttl.0), async |stores| {
        let m = &stores.manager;
        match command {
            SessionsCommand::List {
                user,
                limit,
                offset,
            } => {
                for id in m.list_sessions(user.as_deref(), limit, offset).await? {
                    out(id.as_str())?;
                }
            }
            SessionsCommand::Get { id } => {
                let info = m.get_session_info(&id).await?.ok_or_else(|| missing(&id))?;
                let mut value = serde_json::to_value(&info).map_err(|e| {
                    CliError::new(exit::FAILURE, format!("cannot encode the session: {e}"))
                })?;
                if let Value::Object(map) = &mut value {
                    map.insert("session_id".to_owned(), Value::String(id));
                }
                out_json(&value)?;
            }
            SessionsCommand::Store {
                id,
                user,
                permissions,
                ttl,
                metadata,
            } => {
                let metadata = metadata
                    .map(|text| {
                        serde_json::from_str::<Value>(&text).map_err(|e| {
                            CliError::invalid(format!("--metadata is not valid JSON: {e}"))
                        })
                    })
                    .transpose()?;
                m.store_permissions(&id, &user, &permissions, ttl.map(|t| t.0), metadata)
                    .await?;
                out("stored")?;
            }
            SessionsCommand::Update {
                id,
                permissions,
                ttl,
            } => {
                if !m
                    .update_permissions(&id, &permissions, ttl.map(|t| t.0))
                    .await?
                {
                    return Err(missing(&id));
                }
                out("updated")?;
            }
            SessionsCommand::Extend { id, ttl } => {
                if !m.extend_session_ttl(&id, ttl.0).await? {
                    return Err(missing(&id));
                }
                out("extended")?;
            }
            SessionsCommand::Invalidate { id, user } => match (id, user) {
                (_, Some(user)) => {
                    let n = m.invalidate_user_sessions(&user).await?;
                    out(&format!("{n} sessions invalidated"))?;
                }
                (Some(id), None) => {
                    if !m.invalidate_session(&id).await? {
                        return Err(missing(&id));
                    }
                    out("invalidated")?;
                }
                (None, None) => return Err(CliError::invalid("give a session id or --user")),
            },
            SessionsCommand::Cleanup => {
                let n = m.cleanup_expired_sessions().await?;
                out(&format!("{n} expired sessions removed"))?;
            }
            SessionsCommand::Check(_) => {}
        }
        Ok(exit::OK)
    })
    .await
}

/// `psm check ID PERM...`: prints each permission with `granted` or `denied`; exit 1 when any is
/// denied (a missing session holds nothing).
pub(crate) async fn check(settings: &Settings, args: &CheckArgs) -> Result<u8, CliError> {
    with_stores(settings, None, async |stores| {
        let result = stores
            .manager
            .check_permissions(&args.id, &args.permissions)
            .await?;
        for (permission, granted) in result.entries() {
            out(&format!(
                "{permission}\t{}",
                if *granted { "granted" } else { "denied" }
            ))?;
        }
        Ok(if result.all() { exit::OK } else { exit::DENIED })
    })
    .await
}

/// The JSON line of one session (shared with export).
pub(crate) fn session_line(id: &str, info: &psm::SessionInfo) -> Value {
    json!({
        "session_id": id,
        "user_id": info.data.user_id.as_str(),
        "permissions": info.data.permissions.to_strings(),
        "created_at": info.data.created_at,
        "updated_at": info.data.updated_at,
        "metadata": info.data.metadata.to_value(),
        "expires_at": info.expires_at,
    })
}
