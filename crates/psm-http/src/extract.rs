//! Request decoding with problem answers: JSON bodies, query strings, path ids and bearer tokens.
//!
//! axum's own extractors answer bad input with plain-text bodies and a mix of 400, 415 and 422;
//! these wrappers answer every rejection with a [`Problem`] of a stable code, before any handler
//! (and so any store) runs.

use axum::{
    extract::{
        FromRequest, FromRequestParts, Request,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{StatusCode, header, request::Parts},
};
use psm::{SessionId, UserId};
use serde::de::DeserializeOwned;

use crate::problem::{Problem, codes};

/// A JSON body (`Content-Type: application/json`) decoded into `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_problem(&rejection)),
        }
    }
}

fn json_problem(rejection: &JsonRejection) -> Problem {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json",
        ),
        JsonRejection::JsonSyntaxError(_) => Problem::new(
            StatusCode::BAD_REQUEST,
            codes::MALFORMED_JSON,
            "the body is not valid JSON",
        ),
        JsonRejection::JsonDataError(e) => Problem::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_BODY,
            format!(
                "the body does not match the expected shape: {}",
                without_values(&e.body_text())
            ),
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::PAYLOAD_TOO_LARGE,
                "the body is larger than this server accepts",
            )
        }
        _ => Problem::new(
            StatusCode::BAD_REQUEST,
            codes::MALFORMED_JSON,
            "the body could not be read",
        ),
    }
}

/// serde's message with the offending values cut out: it keeps the field's path and what was
/// expected (`invalid type: string "hunter2", expected u64` becomes `invalid type, expected u64`).
fn without_values(message: &str) -> String {
    let mut out = message.to_owned();
    for marker in ["invalid type: ", "invalid value: ", "invalid length "] {
        while let Some(at) = out.find(marker) {
            let rest = &out[at + marker.len()..];
            let end = rest.find(", expected").map_or(rest.len(), |e| e);
            let head = marker.trim_end_matches([':', ' ']);
            out = format!("{}{head}{}", &out[..at], &rest[end..]);
        }
    }
    out
}

/// A query string decoded into `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                codes::INVALID_PARAMETER,
                format!("the query string is invalid: {}", e.body_text()),
            )),
            Err(_) => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                codes::INVALID_PARAMETER,
                "the query string is invalid",
            )),
        }
    }
}

/// The one path parameter of a route, as a string.
async fn path_string<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<String, Problem> {
    match axum::extract::Path::<String>::from_request_parts(parts, state).await {
        Ok(axum::extract::Path(value)) => Ok(value),
        Err(PathRejection::FailedToDeserializePathParams(_)) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_PARAMETER,
            "the path parameter is not valid UTF-8 text",
        )),
        Err(_) => Err(Problem::internal()),
    }
}

/// A session id from the path (`{id}`), validated.
#[derive(Debug, Clone)]
pub struct SessionPath(pub SessionId);

impl<S: Send + Sync> FromRequestParts<S> for SessionPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = path_string(parts, state).await?;
        SessionId::parse(&raw)
            .map(Self)
            .map_err(|e| Problem::from(e).with("field", "id"))
    }
}

/// A user id from the path (`{id}`), validated.
#[derive(Debug, Clone)]
pub struct UserPath(pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = path_string(parts, state).await?;
        UserId::parse(&raw)
            .map(Self)
            .map_err(|e| Problem::from(e).with("field", "id"))
    }
}

/// The token of an `Authorization: Bearer <token>` header.
///
/// # Errors
/// 401 `unauthorized` when the header is missing, not valid text, of another scheme, or empty.
pub fn bearer_token(parts: &Parts) -> Result<&str, Problem> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Err(Problem::unauthorized(
            "this route needs an Authorization: Bearer token",
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| Problem::unauthorized("the Authorization header is not valid text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| Problem::unauthorized("the Authorization header is not a bearer token"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Problem::unauthorized(
            "the Authorization header is not a bearer token",
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(auth: Option<&str>) -> Parts {
        let mut builder = Request::builder().uri("/");
        if let Some(a) = auth {
            builder = builder.header(header::AUTHORIZATION, a);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn data_errors_keep_the_field_and_drop_the_value() {
        let m =
            "password: invalid type: integer `12345678901`, expected a string at line 1 column 40";
        assert_eq!(
            without_values(m),
            "password: invalid type, expected a string at line 1 column 40"
        );
        let m = "ttl: invalid value: integer `-1`, expected u64";
        assert_eq!(without_values(m), "ttl: invalid value, expected u64");
        assert_eq!(
            without_values("unknown field `tll`, expected one of `ttl`"),
            "unknown field `tll`, expected one of `ttl`"
        );
    }

    #[test]
    fn bearer_tokens_are_read_and_everything_else_is_unauthorized() {
        assert_eq!(
            bearer_token(&parts(Some("Bearer abc.def"))).unwrap(),
            "abc.def"
        );
        assert_eq!(bearer_token(&parts(Some("bearer  abc"))).unwrap(), "abc");
        for bad in [
            None,
            Some("Basic dXNlcjpwdw=="),
            Some("Bearer"),
            Some("Bearer   "),
        ] {
            let p = bearer_token(&parts(bad)).unwrap_err();
            assert_eq!(p.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
            assert_eq!(p.code(), codes::UNAUTHORIZED);
        }
    }
}
