//! [`TokenConfig`]: issuer, audience, lifetimes and clock leeway.

use std::time::Duration;

use psm_core::{Error, Result};

/// The largest accepted clock leeway.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);
/// The longest accepted access-token lifetime (one day).
pub const MAX_ACCESS_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest accepted refresh-family lifetime (one year).
pub const MAX_REFRESH_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// What a [`crate::TokenService`] puts into and demands from every token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// The `iss` claim issued and required.
    pub issuer: String,
    /// The `aud` claim issued and required (a single string).
    pub audience: String,
    /// Lifetime of an access token (default 15 minutes), in whole seconds. An access token never
    /// outlives its refresh family.
    pub access_ttl: Duration,
    /// Absolute lifetime of a refresh-token family (default 30 days), in whole seconds, counted
    /// from [`crate::TokenService::issue`]; rotation never extends it.
    pub refresh_lifetime: Duration,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 30 s, at most 60 s).
    pub leeway: Duration,
}

impl TokenConfig {
    /// A configuration with the defaults: 15 minute access tokens, 30 day families, 30 s leeway.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_lifetime: Duration::from_secs(30 * 24 * 3600),
            leeway: Duration::from_secs(30),
        }
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// `ProviderConfiguration` when the issuer or audience is empty, the access ttl is not between
    /// 1 s and 1 day, the refresh lifetime is not between 1 s and 366 days, or the leeway exceeds
    /// 60 s.
    pub fn validate(&self) -> Result<()> {
        if self.issuer.is_empty() {
            return Err(Error::configuration("token issuer must not be empty"));
        }
        if self.audience.is_empty() {
            return Err(Error::configuration("token audience must not be empty"));
        }
        if self.access_ttl < Duration::from_secs(1) || self.access_ttl > MAX_ACCESS_TTL {
            return Err(Error::configuration(
                "access token ttl must be between 1 second and 1 day",
            )
            .with_detail("secs", self.access_ttl.as_secs()));
        }
        if self.refresh_lifetime < Duration::from_secs(1)
            || self.refresh_lifetime > MAX_REFRESH_LIFETIME
        {
            return Err(Error::configuration(
                "refresh token lifetime must be between 1 second and 366 days",
            )
            .with_detail("secs", self.refresh_lifetime.as_secs()));
        }
        if self.leeway > MAX_LEEWAY {
            return Err(
                Error::configuration("token leeway must be at most 60 seconds")
                    .with_detail("secs", self.leeway.as_secs()),
            );
        }
        Ok(())
    }

    // The bounds above keep these far from overflow.
    pub(crate) fn access_ttl_secs(&self) -> i64 {
        i64::try_from(self.access_ttl.as_secs()).unwrap_or(i64::MAX)
    }

    pub(crate) fn refresh_lifetime_secs(&self) -> i64 {
        i64::try_from(self.refresh_lifetime.as_secs()).unwrap_or(i64::MAX)
    }

    pub(crate) fn leeway_micros(&self) -> i64 {
        i64::try_from(self.leeway.as_micros()).unwrap_or(i64::MAX)
    }
}
