//! Opening the stores the settings name: the composition root of the `psm` command.
//!
//! The session store's provider also keeps the token state and the cache (PostgreSQL, which has no
//! cache, gets an in-process one). Users live in the session store's provider unless `--users`
//! names another; Redis keeps no accounts, so a Redis session store needs `--users`.

use std::sync::Arc;

use psm::{
    DynCache, DynTokenStateStore, DynUserStore, PermissionStorageManager,
    auth::{AuthConfig, AuthService},
    file::{FileConfig, FileStorage},
    jwt::{KeySet, TokenConfig},
    memory::{MemoryCache, MemoryConfig, MemoryStore, MemoryTokenStateStore, MemoryUserStore},
    postgres::{PostgresConfig, PostgresStorage},
    redis::{RedisConfig, RedisStorage},
    util::{ProviderScheme, parse_provider_url},
};
use psm_http::{PoolGauge, PoolSource};
use serde_json::Value;

use crate::{
    CliError,
    settings::{Settings, StoreLocation},
};

/// One opened provider.
#[derive(Debug, Clone)]
enum Opened {
    Memory {
        sessions: MemoryStore,
        users: Arc<MemoryUserStore>,
        tokens: Arc<MemoryTokenStateStore>,
        cache: Arc<MemoryCache>,
    },
    File(FileStorage),
    Redis(RedisStorage),
    Postgres(PostgresStorage),
}

impl Opened {
    fn name(&self) -> &'static str {
        match self {
            Self::Memory { .. } => "memory",
            Self::File(_) => "file",
            Self::Redis(_) => "redis",
            Self::Postgres(_) => "postgres",
        }
    }

    fn users(&self) -> Option<DynUserStore> {
        match self {
            Self::Memory { users, .. } => Some(users.clone()),
            Self::File(s) => Some(Arc::new(s.users())),
            Self::Redis(_) => None,
            Self::Postgres(s) => Some(Arc::new(s.users())),
        }
    }

    fn tokens(&self) -> DynTokenStateStore {
        match self {
            Self::Memory { tokens, .. } => tokens.clone(),
            Self::File(s) => Arc::new(s.tokens()),
            Self::Redis(s) => Arc::new(s.tokens()),
            Self::Postgres(s) => Arc::new(s.tokens()),
        }
    }

    fn cache(&self) -> DynCache {
        match self {
            Self::Memory { cache, .. } => cache.clone(),
            Self::File(s) => Arc::new(s.cache()),
            Self::Redis(s) => Arc::new(s.cache()),
            Self::Postgres(_) => Arc::new(MemoryCache::new()),
        }
    }

    async fn manager(
        &self,
        default_ttl: Option<u64>,
    ) -> Result<PermissionStorageManager, CliError> {
        let builder = PermissionStorageManager::builder().default_ttl(default_ttl);
        let builder = match self {
            Self::Memory { sessions, .. } => builder.store(sessions.clone()),
            Self::File(s) => builder.store(s.sessions()),
            Self::Redis(s) => builder.store(s.sessions()),
            Self::Postgres(s) => builder.store(s.sessions()),
        };
        Ok(builder.build().await?)
    }

    async fn close(&self) -> Result<(), CliError> {
        let result = match self {
            Self::Memory { .. } => Ok(()),
            Self::File(s) => {
                let s = s.clone();
                tokio::task::spawn_blocking(move || s.close())
                    .await
                    .map_err(|e| {
                        psm::Error::provider(format!("closing the file store failed: {e}"))
                    })
            }
            Self::Redis(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        };
        result.map_err(|e| {
            tracing::error!(error = %e, provider = self.name(), "closing a store failed");
            CliError::from(e)
        })
    }
}

async fn open(location: &StoreLocation) -> Result<Opened, CliError> {
    let url = match location {
        StoreLocation::Dir(dir) => return open_file(FileConfig::new(dir.clone())).await,
        StoreLocation::Url(url) => url,
    };
    let (scheme, config) = parse_provider_url(url)?.into_parts();
    let config = Value::Object(config);
    let opened = match scheme {
        ProviderScheme::Memory => {
            let config = MemoryConfig::from_json(&config)?;
            Opened::Memory {
                sessions: MemoryStore::new(config),
                users: Arc::new(MemoryUserStore::new()),
                tokens: Arc::new(MemoryTokenStateStore::new()),
                cache: Arc::new(MemoryCache::new()),
            }
        }
        ProviderScheme::File => return open_file(FileConfig::from_json(&config)?).await,
        ProviderScheme::Redis | ProviderScheme::Rediss => {
            Opened::Redis(RedisStorage::connect(RedisConfig::from_url(url)?).await?)
        }
        ProviderScheme::Postgres => {
            Opened::Postgres(PostgresStorage::connect(PostgresConfig::from_url(url)?).await?)
        }
    };
    Ok(opened)
}

/// Opens a file store (it reads its whole directory: off the async threads).
async fn open_file(config: FileConfig) -> Result<Opened, CliError> {
    let storage = tokio::task::spawn_blocking(move || FileStorage::open(config))
        .await
        .map_err(|e| {
            CliError::new(
                crate::exit::FAILURE,
                format!("opening the file store failed: {e}"),
            )
        })??;
    Ok(Opened::File(storage))
}

/// The stores of one `psm` command.
#[derive(Debug)]
pub struct Stores {
    /// The session manager.
    pub manager: PermissionStorageManager,
    /// The token state of the session store's provider.
    pub tokens: DynTokenStateStore,
    /// The cache of the session store's provider (in-process for PostgreSQL).
    pub cache: DynCache,
    users: Option<DynUserStore>,
    sessions_provider: &'static str,
    users_provider: Option<&'static str>,
    opened: Vec<Opened>,
}

impl Stores {
    /// Opens what `settings` names. Sessions stored without a ttl get `default_ttl` (`None`: they
    /// never expire).
    ///
    /// # Errors
    /// Configuration errors for bad URLs; connection errors when a server does not answer.
    pub async fn open(settings: &Settings, default_ttl: Option<u64>) -> Result<Self, CliError> {
        let sessions = open(&settings.store).await?;
        let manager = sessions.manager(default_ttl).await?;
        let mut users = sessions.users();
        let mut users_provider = users.is_some().then(|| sessions.name());
        let mut opened = vec![sessions.clone()];
        if let Some(location) = &settings.users {
            let other = open(location).await?;
            users = other.users();
            users_provider = Some(other.name());
            if users.is_none() {
                return Err(CliError::config(format!(
                    "the {} provider keeps no user accounts: --users takes memory://, file://PATH or postgres://",
                    other.name()
                )));
            }
            opened.push(other);
        }
        Ok(Self {
            manager,
            tokens: sessions.tokens(),
            cache: sessions.cache(),
            users,
            sessions_provider: sessions.name(),
            users_provider,
            opened,
        })
    }

    /// The user store.
    ///
    /// # Errors
    /// A configuration error when the session store's provider keeps no accounts and `--users`
    /// was not given.
    pub fn users(&self) -> Result<&DynUserStore, CliError> {
        self.users.as_ref().ok_or_else(|| {
            CliError::config(format!(
                "the {} provider keeps no user accounts: pass --users file://PATH or --users postgres://...",
                self.sessions_provider
            ))
        })
    }

    /// The session store's provider name.
    pub fn sessions_provider(&self) -> &'static str {
        self.sessions_provider
    }

    /// The user store's provider name, if there is a user store.
    pub fn users_provider(&self) -> Option<&'static str> {
        self.users_provider
    }

    /// An auth service over these stores.
    ///
    /// # Errors
    /// As [`users`](Self::users); a bad auth configuration.
    pub fn auth(
        &self,
        keys: KeySet,
        config: AuthConfig,
        tokens: TokenConfig,
    ) -> Result<AuthService, CliError> {
        Ok(AuthService::builder()
            .users(self.users()?.clone())
            .sessions(self.manager.store().clone())
            .token_state(self.tokens.clone())
            .cache(self.cache.clone())
            .keys(keys)
            .config(config)
            .token_config(tokens)
            .build()?)
    }

    /// Pool gauges for `/metrics` (PostgreSQL pools).
    pub fn pool_gauges(&self) -> Vec<(String, PoolSource)> {
        self.opened
            .iter()
            .filter_map(|o| match o {
                Opened::Postgres(s) => {
                    let s = s.clone();
                    let source: PoolSource = Arc::new(move || {
                        let p = s.pool_status();
                        PoolGauge {
                            size: p.size,
                            available: p.available,
                            waiting: p.waiting,
                            max_size: p.max_size,
                        }
                    });
                    Some(("postgres".to_owned(), source))
                }
                _ => None,
            })
            .collect()
    }

    /// The PostgreSQL storages among the opened providers (for `psm migrate`).
    pub fn postgres(&self) -> Vec<PostgresStorage> {
        self.opened
            .iter()
            .filter_map(|o| match o {
                Opened::Postgres(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    /// Closes every store: the file store's journal is synced and its lock released.
    ///
    /// # Errors
    /// The first store that failed to close (every store is still closed).
    pub async fn close(&self) -> Result<(), CliError> {
        let mut first = self.manager.close().await.map_err(|e| {
            tracing::error!(error = %e, "closing the session store failed");
            CliError::from(e)
        });
        for o in &self.opened {
            let closed = o.close().await;
            if first.is_ok() {
                first = closed;
            }
        }
        first
    }
}
