//! The providers under soak: each gets a fresh namespace (a directory, a key prefix, a schema), a
//! manager over its permission store, an auth service whose sessions and token state are that
//! provider's, and a teardown that removes everything the run created.

use std::{fmt, path::PathBuf, sync::Arc, time::Duration};

use psm::{
    DynTokenStateStore, OsRandom, PermissionStorageManager, RandomSource,
    auth::{AuthConfig, AuthService},
    file::{FileConfig, FileStorage},
    jwt::{Algorithm, KeySet, SigningKey},
    memory::{MemoryConfig, MemoryStore, MemoryTokenStateStore},
    postgres::{PostgresConfig, PostgresStorage},
    redis::{RedisConfig, RedisStorage},
};

use crate::SoakError;

/// A login session idles out after this long unless refreshed (the auth service's idle timeout).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// A login session and its token family end this long after login, however often refreshed: short,
/// so families of abandoned chains expire (and are cleaned up) within the run.
pub(crate) const ABSOLUTE_LIFETIME: Duration = Duration::from_secs(6);

/// The providers, in the order a full run visits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Memory,
    File,
    Redis,
    RedisCluster,
    Postgres,
}

impl Kind {
    pub(crate) const ALL: [Kind; 5] = [
        Kind::Memory,
        Kind::File,
        Kind::Redis,
        Kind::RedisCluster,
        Kind::Postgres,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Memory => "memory",
            Kind::File => "file",
            Kind::Redis => "redis",
            Kind::RedisCluster => "redis-cluster",
            Kind::Postgres => "postgres",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Where the servers are and where the file store may write.
#[derive(Debug, Clone, Default)]
pub(crate) struct Targets {
    pub(crate) redis_url: Option<String>,
    pub(crate) redis_cluster_url: Option<String>,
    pub(crate) postgres_url: Option<String>,
    pub(crate) file_dir: PathBuf,
}

/// One provider, ready for the workload.
pub(crate) struct Rig {
    pub(crate) manager: PermissionStorageManager,
    pub(crate) tokens: DynTokenStateStore,
    pub(crate) auth: AuthService,
    teardown: Teardown,
}

impl fmt::Debug for Rig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rig")
            .field("manager", &self.manager)
            .finish_non_exhaustive()
    }
}

enum Teardown {
    Memory,
    File(FileStorage, PathBuf),
    Redis(RedisStorage),
    Postgres(PostgresStorage, String),
}

/// A name no earlier or concurrent run uses: the process id and 64 random bits.
pub(crate) fn fresh_name() -> Result<String, SoakError> {
    let mut bytes = [0u8; 8];
    OsRandom.fill(&mut bytes)?;
    Ok(format!(
        "{}_{:016x}",
        std::process::id(),
        u64::from_le_bytes(bytes)
    ))
}

fn with_param(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

impl Rig {
    /// Connects `kind` in a fresh namespace.
    pub(crate) async fn open(kind: Kind, targets: &Targets) -> Result<Self, SoakError> {
        let name = fresh_name()?;
        let missing = |what: &str| SoakError::new(format!("{what} is needed for {}", kind.name()));
        let (manager, tokens, teardown): (_, DynTokenStateStore, _) = match kind {
            Kind::Memory => {
                let store = MemoryStore::new(MemoryConfig::default());
                let manager = PermissionStorageManager::from_store(store).await?;
                let tokens: DynTokenStateStore = Arc::new(MemoryTokenStateStore::new());
                (manager, tokens, Teardown::Memory)
            }
            Kind::File => {
                let dir = targets.file_dir.join(format!("soak-{name}"));
                let storage = FileStorage::open(FileConfig::new(&dir))?;
                let manager = PermissionStorageManager::from_store(storage.sessions()).await?;
                let tokens: DynTokenStateStore = Arc::new(storage.tokens());
                (manager, tokens, Teardown::File(storage, dir))
            }
            Kind::Redis | Kind::RedisCluster => {
                let url = if kind == Kind::Redis {
                    targets
                        .redis_url
                        .as_deref()
                        .ok_or_else(|| missing("--redis-url"))?
                } else {
                    targets
                        .redis_cluster_url
                        .as_deref()
                        .ok_or_else(|| missing("--redis-cluster-url"))?
                };
                let mut config = RedisConfig::from_url(url)?;
                config.key_prefix = format!("psmsoak:{name}:");
                let storage = RedisStorage::connect(config).await?;
                let manager = PermissionStorageManager::from_store(storage.sessions()).await?;
                let tokens: DynTokenStateStore = Arc::new(storage.tokens());
                (manager, tokens, Teardown::Redis(storage))
            }
            Kind::Postgres => {
                let url = targets
                    .postgres_url
                    .as_deref()
                    .ok_or_else(|| missing("--postgres-url"))?;
                let schema = format!("psm_soak_{name}");
                let mut url = with_param(url, "schema", &schema);
                if !url.contains("sslmode=") {
                    // Loopback servers need no TLS, and the conventional one has none.
                    url = with_param(&url, "sslmode", "disable");
                }
                let storage = PostgresStorage::connect(PostgresConfig::from_url(&url)?).await?;
                let manager = PermissionStorageManager::from_store(storage.sessions()).await?;
                let tokens: DynTokenStateStore = Arc::new(storage.tokens());
                (manager, tokens, Teardown::Postgres(storage, schema))
            }
        };
        let auth = auth_service(&manager, &tokens)?;
        Ok(Self {
            manager,
            tokens,
            auth,
            teardown,
        })
    }

    /// A rig over stores the caller made (the self-tests' sabotaged ones).
    #[cfg(test)]
    pub(crate) async fn from_parts(
        store: impl psm::PermissionStore,
        tokens: DynTokenStateStore,
    ) -> Result<Self, SoakError> {
        let manager = PermissionStorageManager::from_store(store).await?;
        let auth = auth_service(&manager, &tokens)?;
        Ok(Self {
            manager,
            tokens,
            auth,
            teardown: Teardown::Memory,
        })
    }

    /// Removes what the run created and closes the provider; reports what it could not remove.
    pub(crate) async fn teardown(self) -> Result<(), SoakError> {
        // Purged while still open: closing the manager closes the storage it shares.
        let purged = match &self.teardown {
            Teardown::Memory | Teardown::File(..) => Ok(()),
            Teardown::Redis(storage) => purge_redis(storage).await,
            Teardown::Postgres(storage, schema) => drop_schema(storage, schema).await,
        };
        let closed = self.manager.close().await;
        match self.teardown {
            Teardown::Memory => {}
            Teardown::File(storage, dir) => {
                storage.close();
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| SoakError::new(format!("cannot remove {}: {e}", dir.display())))?;
            }
            Teardown::Redis(storage) => storage.close().await?,
            Teardown::Postgres(storage, _) => storage.close().await?,
        }
        purged?;
        closed.map_err(SoakError::from)
    }
}

/// Every key of the run's prefix: sessions and indexes, token families, cache entries (the soak
/// never raises a token epoch, the one kind of key these leave).
async fn purge_redis(storage: &RedisStorage) -> Result<(), SoakError> {
    storage.sessions().flush_all_sessions().await?;
    storage.tokens().flush_all().await?;
    storage.cache().clear().await?;
    Ok(())
}

async fn drop_schema(storage: &PostgresStorage, schema: &str) -> Result<(), SoakError> {
    let client = storage.client().await?;
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await
        .map_err(|e| SoakError::new(format!("cannot drop schema {schema}: {e}")))
}

/// The auth service over the provider's sessions and token state (accounts and the user cache in
/// memory: the soak never registers anyone), with a throwaway signing key.
fn auth_service(
    manager: &PermissionStorageManager,
    tokens: &DynTokenStateStore,
) -> Result<AuthService, SoakError> {
    let mut secret = [0u8; 32];
    OsRandom.fill(&mut secret)?;
    let key = SigningKey::hmac("soak", Algorithm::HS256, &secret)?;
    let mut config = AuthConfig::default();
    config.idle_timeout = IDLE_TIMEOUT;
    config.absolute_lifetime = ABSOLUTE_LIFETIME;
    Ok(AuthService::builder()
        .memory()
        .sessions(manager.store().clone())
        .token_state(tokens.clone())
        .keys(KeySet::new(key)?)
        .config(config)
        .build()?)
}
