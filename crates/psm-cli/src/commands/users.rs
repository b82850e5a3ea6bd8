//! `psm users create|get|delete`.

use std::io::{BufRead, IsTerminal};

use psm::{
    Page, PermissionList, PermissionRef, UserId,
    auth::{AuthConfig, RegisterRequest, User},
    jwt::TokenConfig,
};
use psm_http::{ADMIN_PERMISSION, DEFAULT_USER_PERMISSION};
use serde_json::{Value, json};

use crate::{
    CliError,
    cli::UsersCommand,
    commands::{out_json, with_stores},
    exit, keys,
    settings::Settings,
};

/// An account as printed: never the password hash.
fn user_json(user: &User) -> Value {
    json!({
        "id": user.id.as_str(),
        "username": user.username.as_str(),
        "email": user.email.as_str(),
        "permissions": user.permissions.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "created_at": user.created_at,
        "updated_at": user.updated_at,
    })
}

/// The password: the first line of standard input, or a prompt without echo on a terminal.
fn read_password(from_stdin: bool) -> Result<String, CliError> {
    let stdin = std::io::stdin();
    if from_stdin || !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::io("cannot read the password from standard input", &e))?;
        let password = line.trim_end_matches(['\n', '\r']).to_owned();
        if password.is_empty() {
            return Err(CliError::invalid(
                "no password on standard input (give it as the first line)",
            ));
        }
        return Ok(password);
    }
    let first = rpassword::prompt_password("password: ")
        .map_err(|e| CliError::io("cannot read the password", &e))?;
    let again = rpassword::prompt_password("again: ")
        .map_err(|e| CliError::io("cannot read the password", &e))?;
    if first != again {
        return Err(CliError::invalid("the passwords differ"));
    }
    Ok(first)
}

/// Runs a `psm users` subcommand.
pub(crate) async fn run(settings: &Settings, command: UsersCommand) -> Result<u8, CliError> {
    // Read before any store is opened: a prompt must not hold the file store's lock.
    let password = match &command {
        UsersCommand::Create { password_stdin, .. } => Some(read_password(*password_stdin)?),
        _ => None,
    };
    with_stores(settings, None, async |stores| {
        // These commands issue no token: a throwaway key, so they never create the secret file.
        let auth = stores.auth(keys::ephemeral()?, AuthConfig::default(), TokenConfig::new("psm", "psm"))?;
        match command {
            UsersCommand::Create {
                email,
                username,
                mut permissions,
                admin,
                ..
            } => {
                if permissions.is_empty() {
                    permissions.push(DEFAULT_USER_PERMISSION.to_owned());
                }
                if admin && !permissions.iter().any(|p| p == ADMIN_PERMISSION) {
                    permissions.push(ADMIN_PERMISSION.to_owned());
                }
                let given = username.is_some();
                let username = username.unwrap_or_else(|| {
                    email
                        .split('@')
                        .next()
                        .unwrap_or_default()
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                        .collect()
                });
                if !given && psm::auth::Username::parse(&username).is_err() {
                    return Err(CliError::invalid(format!(
                        "the email's local part does not make a valid username ({username:?}): pass --username (3 to 64 letters, digits, '.', '-', '_')"
                    )));
                }
                let user = auth
                    .register(RegisterRequest {
                        username,
                        email,
                        password: password.unwrap_or_default(),
                        permissions: PermissionList::parse(&permissions)?,
                    })
                    .await?;
                out_json(&user_json(&user))?;
            }
            UsersCommand::List {
                permission,
                limit,
                offset,
            } => {
                let permission = permission
                    .as_deref()
                    .map(PermissionRef::parse)
                    .transpose()?;
                let users = stores
                    .users()?
                    .list_users(permission, Page::new(limit, offset)?)
                    .await?;
                for user in &users {
                    crate::commands::out(&user_json(user).to_string())?;
                }
            }
            UsersCommand::Get { id, email } => {
                let user = match (id, email) {
                    (_, Some(email)) => auth.get_user_by_email(&email).await?,
                    (Some(id), None) => stores.users()?.get_user(&UserId::parse(&id)?).await?,
                    (None, None) => return Err(CliError::invalid("give a user id or --email")),
                };
                let user = user.ok_or_else(|| CliError::not_found("no such user"))?;
                out_json(&user_json(&user))?;
            }
            UsersCommand::Delete { id } => {
                if !auth.delete_user(&UserId::parse(&id)?).await? {
                    return Err(CliError::not_found("no such user"));
                }
                crate::commands::out("deleted")?;
            }
        }
        Ok(exit::OK)
    })
    .await
}
