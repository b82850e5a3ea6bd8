//! Macros expanding the suite into one `#[tokio::test]` per case, so failures are reported by name.

/// Expands to one test per case of a list, each calling `$path::$case(&fixture)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __psm_cases {
    ($fixture:expr, $path:path, [$($case:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                use $path as cases;
                let fixture = $fixture;
                cases::$case(&fixture).await;
            }
        )*
    };
}

/// Runs every `PermissionStore` conformance case against `$fixture` (a `PermissionStoreFixture`).
#[macro_export]
macro_rules! permission_store_tests {
    ($fixture:expr) => {
        mod permission_store_conformance {
            #[allow(unused_imports)]
            use super::*;
            $crate::__psm_cases!($fixture, $crate::testkit::cases::store, [
                PLACEHOLDER_PERMISSION_STORE_CASES
            ]);
        }
    };
}
