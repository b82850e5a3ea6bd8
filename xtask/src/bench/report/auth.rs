//! The token and login targets, judged from the `psm` crate's `auth` criterion bench (which times
//! psm and the bare building block in the same run).

use serde_json::Value;

/// Stateless access-token verification may cost at most this many times a bare decode.
const STATELESS_VS_BARE: f64 = 1.3;
/// Strict verification (epoch read on the memory provider) may cost at most this many times.
const STRICT_VS_BARE: f64 = 2.0;
/// Login throughput on 2 threads must be at least this share of bare argon2id verification's.
const LOGIN_VS_ARGON2: f64 = 0.9;

const BARE: &str = "access_token_verify_hs256/bare_jsonwebtoken_decode";
const STATELESS: &str = "access_token_verify_hs256/psm_verify_access_stateless";
const STRICT: &str = "access_token_verify_hs256/psm_verify_access_strict_memory";
const ARGON2: &str = "login_2_threads_owasp_argon2id/bare_argon2id_verify";
const LOGIN: &str = "login_2_threads_owasp_argon2id/psm_auth_login";

/// `(target, measured, verdict)` rows.
pub(super) fn targets(raw: &Value) -> Vec<(String, String, &'static str)> {
    let time = |name: &str| {
        raw["criterion"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["name"].as_str() == Some(name)))
            .and_then(|r| r["time"].as_str())
            .and_then(nanos)
    };
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let mut rows = Vec::new();
    let r = ratio(time(STATELESS), time(BARE));
    rows.push((
        format!(
            "access-token verification (HS256, stateless) ≤ {STATELESS_VS_BARE}× a bare jsonwebtoken decode"
        ),
        r.map_or_else(not_run, |r| format!("{r:.2}×")),
        judge(r.map(|r| r <= STATELESS_VS_BARE)),
    ));
    let r = ratio(time(STRICT), time(BARE));
    rows.push((
        format!(
            "strict verification (epoch on the memory provider) ≤ {STRICT_VS_BARE}× a bare jsonwebtoken decode"
        ),
        r.map_or_else(not_run, |r| format!("{r:.2}×")),
        judge(r.map(|r| r <= STRICT_VS_BARE)),
    ));
    // Throughput is the inverse of the time per login.
    let r = ratio(time(ARGON2), time(LOGIN));
    rows.push((
        format!(
            "login throughput on 2 threads ≥ {:.0}% of bare argon2id verification",
            LOGIN_VS_ARGON2 * 100.0
        ),
        r.map_or_else(not_run, |r| format!("{:.0}%", r * 100.0)),
        judge(r.map(|r| r >= LOGIN_VS_ARGON2)),
    ));
    rows
}

fn not_run() -> String {
    "— (criterion not run)".to_owned()
}

fn judge(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "not met",
        None => "not measured",
    }
}

/// Nanoseconds from criterion's middle estimate, such as `"3.3871 µs"`.
fn nanos(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let value: f64 = parts.next()?.parse().ok()?;
    let scale = match parts.next()? {
        "ps" => 1e-3,
        "ns" => 1.0,
        "µs" | "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    Some(value * scale)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_criterion_times_and_judges_the_ratios() {
        assert_eq!(nanos("3.5 µs"), Some(3500.0));
        assert_eq!(nanos("10.75 ms"), Some(10_750_000.0));
        assert_eq!(nanos("12 parsecs"), None);
        let raw = json!({"criterion": [
            {"name": BARE, "time": "3.0 µs"},
            {"name": STATELESS, "time": "1.5 µs"},
            {"name": STRICT, "time": "7.0 µs"},
            {"name": ARGON2, "time": "10.0 ms"},
            {"name": LOGIN, "time": "10.5 ms"},
        ]});
        let rows = targets(&raw);
        let got: Vec<_> = rows.iter().map(|(_, m, v)| (m.as_str(), *v)).collect();
        assert_eq!(
            got,
            [("0.50×", "met"), ("2.33×", "not met"), ("95%", "met")]
        );
        let none = targets(&json!({}));
        assert!(none.iter().all(|(_, _, v)| *v == "not measured"));
    }
}
