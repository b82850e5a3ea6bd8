//! Prometheus metrics: requests by route and status with latency histograms, store operations by
//! provider and kind, and pool gauges read at scrape time.
//!
//! Each [`Api`](crate::Api) owns its recorder (no process-global state), so several servers, or
//! tests, in one process keep their figures apart.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::Method,
    middleware::Next,
    response::Response,
};
use hashbrown::{Equivalent, HashMap};
use metrics::{Counter, Histogram, Key, Label, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use parking_lot::RwLock;

use crate::Api;

const REQUESTS: &str = "psm_http_requests_total";
const REQUEST_SECONDS: &str = "psm_http_request_duration_seconds";
const STORE_OPS: &str = "psm_store_operations_total";
const STORE_SECONDS: &str = "psm_store_operation_duration_seconds";
const POOL: &str = "psm_pool_connections";
const AUTH_OPS: &str = "psm_auth_operations_total";
const AUTH_SECONDS: &str = "psm_auth_operation_duration_seconds";

/// Latency buckets in seconds, from 100 µs to 10 s.
const BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

static METADATA: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

/// A connection pool's state, read for the `psm_pool_connections` gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolGauge {
    /// Connections open.
    pub size: usize,
    /// Connections idle.
    pub available: usize,
    /// Calls waiting for a connection.
    pub waiting: usize,
    /// The configured maximum.
    pub max_size: usize,
}

/// Reads a pool's state at scrape time.
pub type PoolSource = Arc<dyn Fn() -> PoolGauge + Send + Sync>;

/// A counter and a histogram of one label set.
#[derive(Clone)]
struct Handles {
    count: Counter,
    seconds: Histogram,
}

/// The label set of a request, owned (the cache's key).
#[derive(PartialEq, Eq, Hash)]
struct RequestKey {
    method: Method,
    route: Box<str>,
    status: u16,
}

/// The same label set, borrowed: looking a request up allocates nothing.
#[derive(Hash)]
struct RequestRef<'a> {
    method: &'a Method,
    route: &'a str,
    status: u16,
}

impl Equivalent<RequestKey> for RequestRef<'_> {
    fn equivalent(&self, key: &RequestKey) -> bool {
        *self.method == key.method && self.route == &*key.route && self.status == key.status
    }
}

/// The label set of a store operation (an auth operation has no provider).
#[derive(PartialEq, Eq, Hash)]
struct OpKey {
    auth: bool,
    provider: Box<str>,
    operation: &'static str,
    result: &'static str,
}

#[derive(Hash)]
struct OpRef<'a> {
    auth: bool,
    provider: &'a str,
    operation: &'static str,
    result: &'static str,
}

impl Equivalent<OpKey> for OpRef<'_> {
    fn equivalent(&self, key: &OpKey) -> bool {
        self.provider == &*key.provider
            && self.operation == key.operation
            && self.result == key.result
    }
}

/// The metrics of one API.
#[derive(Clone)]
pub(crate) struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    pools: Vec<(String, PoolSource)>,
    // Registered handles by label set: the recorder's own registry hashes a freshly built key on
    // every call; this cache is looked up with borrowed labels.
    requests: Arc<RwLock<HashMap<RequestKey, Handles>>>,
    ops: Arc<RwLock<HashMap<OpKey, Handles>>>,
    /// The upkeep task runs while this lives (every clone of the API holds it).
    _alive: Arc<()>,
}

/// How often histogram samples are folded into their buckets. The recorder keeps every sample
/// until then: without upkeep, a server nobody scrapes would grow without bound.
const UPKEEP: Duration = Duration::from_secs(5);

/// Folds samples every [`UPKEEP`] until the metrics are dropped (when built inside a runtime;
/// otherwise `render` folds them, at each scrape).
fn spawn_upkeep(handle: &PrometheusHandle, alive: &Arc<()>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let handle = handle.clone();
    let alive = Arc::downgrade(alive);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if alive.upgrade().is_none() {
                break;
            }
            handle.run_upkeep();
        }
    });
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field(
                "pools",
                &self.pools.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new(pools: Vec<(String, PoolSource)>) -> Self {
        let builder = PrometheusBuilder::new();
        // Buckets make histograms (not summaries); the matchers cannot fail for these names.
        let builder = match builder
            .set_buckets_for_metric(Matcher::Full(REQUEST_SECONDS.to_owned()), &BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(STORE_SECONDS.to_owned()), &BUCKETS)
            }) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "latency buckets refused; histograms become summaries");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        recorder.describe_counter(
            REQUESTS.into(),
            None,
            "HTTP requests by method, route and status".into(),
        );
        recorder.describe_histogram(
            REQUEST_SECONDS.into(),
            Some(Unit::Seconds),
            "HTTP request latency by method, route and status".into(),
        );
        recorder.describe_counter(
            STORE_OPS.into(),
            None,
            "store operations by provider, operation and result (ok or an error code)".into(),
        );
        recorder.describe_histogram(
            STORE_SECONDS.into(),
            Some(Unit::Seconds),
            "store operation latency by provider and operation".into(),
        );
        recorder.describe_counter(
            AUTH_OPS.into(),
            None,
            "auth operations (login, register, refresh, ...) by operation and result".into(),
        );
        recorder.describe_histogram(
            AUTH_SECONDS.into(),
            Some(Unit::Seconds),
            "auth operation latency by operation".into(),
        );
        recorder.describe_gauge(
            POOL.into(),
            None,
            "connection pool state by provider and state (size, available, waiting, max)".into(),
        );
        let alive = Arc::new(());
        spawn_upkeep(&handle, &alive);
        Self {
            recorder: Arc::new(recorder),
            handle,
            pools,
            requests: Arc::default(),
            ops: Arc::default(),
            _alive: alive,
        }
    }

    /// Counts one request.
    fn request(&self, method: &Method, route: &str, status: u16, elapsed: Duration) {
        let borrowed = RequestRef {
            method,
            route,
            status,
        };
        let found = self.requests.read().get(&borrowed).cloned();
        let handles = match found {
            Some(h) => h,
            None => {
                let labels = vec![
                    Label::new("method", method.as_str().to_owned()),
                    Label::new("route", route.to_owned()),
                    Label::new("status", status.to_string()),
                ];
                let h = Handles {
                    count: self
                        .recorder
                        .register_counter(&Key::from_parts(REQUESTS, labels.clone()), &METADATA),
                    seconds: self
                        .recorder
                        .register_histogram(&Key::from_parts(REQUEST_SECONDS, labels), &METADATA),
                };
                self.requests.write().insert(
                    RequestKey {
                        method: method.clone(),
                        route: route.into(),
                        status,
                    },
                    h.clone(),
                );
                h
            }
        };
        handles.count.increment(1);
        handles.seconds.record(elapsed.as_secs_f64());
    }

    /// Counts a request no route matched (`route="unmatched"`; answered at once).
    pub(crate) fn unmatched(&self, method: &Method, status: u16) {
        self.request(method, "unmatched", status, Duration::ZERO);
    }

    /// Counts one store operation of `provider`.
    pub(crate) fn store_op(
        &self,
        provider: &str,
        operation: &'static str,
        result: &'static str,
        elapsed: Duration,
    ) {
        self.op(false, provider, operation, result, elapsed);
    }

    /// Counts one auth operation (it reaches several stores, so it has no provider).
    pub(crate) fn auth_op(&self, operation: &'static str, result: &'static str, elapsed: Duration) {
        self.op(true, "", operation, result, elapsed);
    }

    fn op(
        &self,
        auth: bool,
        provider: &str,
        operation: &'static str,
        result: &'static str,
        elapsed: Duration,
    ) {
        let borrowed = OpRef {
            auth,
            provider,
            operation,
            result,
        };
        let found = self.ops.read().get(&borrowed).cloned();
        let handles = match found {
            Some(h) => h,
            None => {
                let o = Label::new("operation", operation);
                let r = Label::new("result", result);
                let (count, seconds) = if auth {
                    (
                        Key::from_parts(AUTH_OPS, vec![o.clone(), r]),
                        Key::from_parts(AUTH_SECONDS, vec![o]),
                    )
                } else {
                    let p = Label::new("provider", provider.to_owned());
                    (
                        Key::from_parts(STORE_OPS, vec![p.clone(), o.clone(), r]),
                        Key::from_parts(STORE_SECONDS, vec![p, o]),
                    )
                };
                let h = Handles {
                    count: self.recorder.register_counter(&count, &METADATA),
                    seconds: self.recorder.register_histogram(&seconds, &METADATA),
                };
                self.ops.write().insert(
                    OpKey {
                        auth,
                        provider: provider.into(),
                        operation,
                        result,
                    },
                    h.clone(),
                );
                h
            }
        };
        handles.count.increment(1);
        handles.seconds.record(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition, with the pool gauges read now.
    pub(crate) fn render(&self) -> String {
        for (provider, source) in &self.pools {
            let gauge = source();
            for (state, value) in [
                ("size", gauge.size),
                ("available", gauge.available),
                ("waiting", gauge.waiting),
                ("max", gauge.max_size),
            ] {
                let labels = vec![
                    Label::new("provider", provider.clone()),
                    Label::new("state", state),
                ];
                #[allow(clippy::cast_precision_loss)] // pool sizes are far below 2^52
                self.recorder
                    .register_gauge(&Key::from_parts(POOL, labels), &METADATA)
                    .set(value as f64);
            }
        }
        self.handle.render()
    }
}

/// Middleware: times every request and counts it under its route template (never the raw path,
/// so ids do not become label values).
pub(crate) async fn track(State(api): State<Api>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    // An `Arc<str>` inside: cloning it allocates nothing.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    api.metrics()
        .request(&method, route, response.status().as_u16(), start.elapsed());
    response
}
