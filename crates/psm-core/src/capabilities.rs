//! What a provider can do, as explicit flags. The conformance suite branches on these and nothing else.

/// A provider's capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct Capabilities {
    /// The backend expires data itself (Redis `PEXPIRE`); the seed's `supports_ttl`.
    pub native_ttl: bool,
    /// The store reads time from the [`crate::Clock`] it was given, so tests can move time.
    pub honours_clock: bool,
    /// Acknowledged writes survive a process crash.
    pub durable: bool,
    /// Several processes may share the data at once.
    pub shared_across_processes: bool,
}

impl Capabilities {
    /// No capabilities; set the flags that apply.
    pub const fn none() -> Self {
        Self {
            native_ttl: false,
            honours_clock: false,
            durable: false,
            shared_across_processes: false,
        }
    }

    /// With `native_ttl` set to `v`.
    #[must_use]
    pub const fn with_native_ttl(mut self, v: bool) -> Self {
        self.native_ttl = v;
        self
    }

    /// With `honours_clock` set to `v`.
    #[must_use]
    pub const fn with_honours_clock(mut self, v: bool) -> Self {
        self.honours_clock = v;
        self
    }

    /// With `durable` set to `v`.
    #[must_use]
    pub const fn with_durable(mut self, v: bool) -> Self {
        self.durable = v;
        self
    }

    /// With `shared_across_processes` set to `v`.
    #[must_use]
    pub const fn with_shared_across_processes(mut self, v: bool) -> Self {
        self.shared_across_processes = v;
        self
    }
}
