//! The command line (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::settings::{Secs, ServeFlags, StoreFlags};

const AFTER_HELP: &str = "\
Settings: a flag wins over its PSM_* variable, which wins over the --config TOML file, which wins
over the default.

Exit codes: 0 success, 1 a check was denied, 2 usage, 3 not found, 4 invalid input (nothing was
changed), 5 conflict (exists, limit), 6 a store is unavailable or busy (retry later), 7 configuration,
8 authentication, 10 other failure.";

/// psm: sessions, permissions and tokens for web services.
#[derive(Debug, Parser)]
#[command(name = "psm", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Where the stores are, and logging.
    #[command(flatten)]
    pub store: StoreFlags,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (default: 127.0.0.1:8080, embedded file store in ./psm-data).
    Serve(ServeFlags),
    /// Work with sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Whether a session holds permissions (exit 0: all granted, 1: some denied).
    Check(CheckArgs),
    /// Work with user accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Run the PostgreSQL migrations of the configured stores (nothing to do for the others).
    Migrate,
    /// Write every live session as JSON lines (to standard output or --output).
    Export(ExportArgs),
    /// Read sessions as JSON lines (from standard input or --input) into the store.
    Import(ImportArgs),
    /// Put load on the store and print a table of rates and latencies.
    Bench(BenchArgs),
}

/// `psm sessions ...`.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Session ids: one user's by creation, or all in the provider's order.
    List {
        /// Only this user's sessions.
        #[arg(long)]
        user: Option<String>,
        /// Page size (1 to 10,000).
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Ids to skip.
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// A session's record and ttl state, as JSON (exit 3 when missing).
    Get {
        /// The session id.
        id: String,
    },
    /// Store a session (replacing one with this id).
    Store {
        /// The session id.
        id: String,
        /// The owner.
        #[arg(long)]
        user: String,
        /// Permissions (repeat the flag or separate with commas).
        #[arg(
            long = "permission",
            short = 'p',
            required = true,
            value_delimiter = ','
        )]
        permissions: Vec<String>,
        /// TTL [default: --default-ttl].
        #[arg(long)]
        ttl: Option<Secs>,
        /// Metadata, a JSON object.
        #[arg(long)]
        metadata: Option<String>,
    },
    /// Whether a session holds permissions (exit 0: all granted, 1: some denied).
    Check(CheckArgs),
    /// Replace a session's permissions (without --ttl the expiry stays).
    Update {
        /// The session id.
        id: String,
        /// The new permissions.
        #[arg(
            long = "permission",
            short = 'p',
            required = true,
            value_delimiter = ','
        )]
        permissions: Vec<String>,
        /// A new ttl.
        #[arg(long)]
        ttl: Option<Secs>,
    },
    /// Make a session expire TTL from now.
    Extend {
        /// The session id.
        id: String,
        /// The new ttl.
        #[arg(long)]
        ttl: Secs,
    },
    /// End a session, or every session of a user.
    Invalidate {
        /// The session id.
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        id: Option<String>,
        /// End every session of this user instead.
        #[arg(long)]
        user: Option<String>,
    },
    /// Remove expired sessions; prints how many.
    Cleanup,
}

/// `psm check` and `psm sessions check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The session id.
    pub id: String,
    /// The permissions to check.
    #[arg(required = true)]
    pub permissions: Vec<String>,
}

/// `psm users ...`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create an account; the password is read from standard input (or prompted for).
    Create {
        /// Email address.
        #[arg(long)]
        email: String,
        /// Username [default: the email's local part].
        #[arg(long)]
        username: Option<String>,
        /// Permissions (repeat or separate with commas) [default: psm:user].
        #[arg(long = "permission", short = 'p', value_delimiter = ',')]
        permissions: Vec<String>,
        /// Also grant psm:admin (the admin API routes).
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input (for scripts).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Accounts by creation, one JSON object per line (never a password hash).
    List {
        /// Only users holding exactly this permission (e.g. psm:admin).
        #[arg(long)]
        permission: Option<String>,
        /// Page size (1 to 10,000).
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Users to skip.
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// An account as JSON (never its password hash); exit 3 when missing.
    Get {
        /// The user id.
        #[arg(required_unless_present = "email", conflicts_with = "email")]
        id: Option<String>,
        /// Look up by email instead.
        #[arg(long)]
        email: Option<String>,
    },
    /// Delete an account with its sessions and tokens.
    Delete {
        /// The user id.
        id: String,
    },
}

/// `psm export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// `psm import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Read from here instead of standard input.
    #[arg(long, short)]
    pub input: Option<PathBuf>,
}

/// `psm bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Sessions stored before the measured operations.
    #[arg(long, default_value_t = 10_000)]
    pub sessions: usize,
    /// Operations per measured kind.
    #[arg(long, default_value_t = 100_000)]
    pub ops: usize,
    /// Concurrent tasks.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}
