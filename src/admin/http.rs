//! HTTP/1.1 plumbing of the admin API: one task per connection with
//! bounded header and body read times, a body size cap and a bound on the
//! number of open connections, so a slow or stuck client cannot hold up the
//! daemon; JSON responses and errors (`{"error": "..."}`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

/// Longest wait for a request's header (also bounds an idle keep-alive).
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a request's body.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one connection.
pub(crate) const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);
/// Largest accepted request body.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// Connections served at once; more wait in the listen backlog.
pub(crate) const MAX_CONNECTIONS: usize = 64;

/// The response type of every handler.
pub(crate) type HttpResponse = Response<Full<Bytes>>;

/// A refused request: its status and what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Further lines (e.g. every configuration error of a refused reload).
    pub details: Vec<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            details: Vec::new(),
        }
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    errors: &'a [String],
}

/// `value` as a JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> HttpResponse {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            respond(status, "application/json", body)
        }
        Err(e) => error(&ApiError::internal(format!("encoding the answer: {e}"))),
    }
}

/// The JSON error response of `e`.
pub fn error(e: &ApiError) -> HttpResponse {
    let body = ErrorBody {
        error: &e.message,
        errors: &e.details,
    };
    let mut bytes =
        serde_json::to_vec(&body).unwrap_or_else(|_| br#"{"error":"unprintable error"}"#.to_vec());
    bytes.push(b'\n');
    respond(e.status, "application/json", bytes)
}

/// A response with a body of `content_type`.
pub fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The request body, at most [`MAX_BODY_BYTES`], within [`BODY_TIMEOUT`].
pub(crate) async fn read_body(request: Request<Incoming>) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let body = Limited::new(request.into_body(), MAX_BODY_BYTES);
    match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(ApiError::bad_request(format!(
            "reading the request body: {e}"
        ))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Parses a JSON body; an empty body is `T::default()`.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
}

/// Serves one connection with `handle` under the limits above.
pub async fn serve_connection<S, H, F>(stream: S, handle: H)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    let handle = Arc::new(handle);
    let service = service_fn(move |request| {
        let handle = handle.clone();
        async move { Ok::<_, Infallible>(handle(request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "admin connection ended with an error"),
        Err(_) => tracing::debug!("admin connection closed after its maximum lifetime"),
    }
}

/// The bound on concurrent connections of one listener.
pub(crate) fn connection_slots() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(MAX_CONNECTIONS))
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`).
pub(crate) fn percent_decode(input: &str, plus_is_space: bool) -> Result<String, ApiError> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| ApiError::bad_request(format!("bad %-escape in `{input}`")))?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request(format!("`{input}` is not UTF-8")))
}

/// Encodes everything but unreserved characters (RFC 3986 section 2.3).
pub(crate) fn percent_encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for b in input.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The pairs of a query string, decoded.
pub(crate) fn parse_query(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(name, true)?, percent_decode(value, true)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_round_trip() {
        let encoded = percent_encode("a b&c=d@é");
        assert_eq!(encoded, "a%20b%26c%3Dd%40%C3%A9");
        let pairs = parse_query(&format!("x={encoded}&flag&y=1+2")).expect("valid");
        assert_eq!(
            pairs,
            vec![
                ("x".to_string(), "a b&c=d@é".to_string()),
                ("flag".to_string(), String::new()),
                ("y".to_string(), "1 2".to_string()),
            ]
        );
        assert!(parse_query("x=%zz").is_err());
        assert!(parse_query("x=%ff").is_err());
        assert!(parse_query("x=%4").is_err());
    }

    proptest::proptest! {
        #[test]
        fn encoding_round_trips_and_decoding_never_panics(text in ".*", raw in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            proptest::prop_assert_eq!(percent_decode(&percent_encode(&text), false).ok(), Some(text.clone()));
            let query = String::from_utf8_lossy(&raw).into_owned();
            let _ = parse_query(&query);
            let _ = percent_decode(&query, false);
        }
    }
}
