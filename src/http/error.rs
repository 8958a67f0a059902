//! The Graph error body. Every HTTP error, whatever its source (JSON, rules, auth,
//! upstream, routing), becomes an [`ApiError`], and is written once, here, as
//! `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`.

use std::borrow::Cow;

use axum::{
    extract::rejection::BytesRejection,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use time::{OffsetDateTime, macros::format_description};
use tonic::Code;
use tonic_types::StatusExt as _;

use super::RequestContext;

/// An HTTP error as Graph reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Graph's error code, e.g. `BadRequest` or `Request_ResourceNotFound`.
    pub code: &'static str,
    pub message: Cow<'static, str>,
    /// Seconds for a `Retry-After` header (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 BadRequest with a message that says what to fix.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 415 for a body that is not declared as JSON.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "The request body must be JSON: send the header 'Content-Type: application/json'.",
        )
    }

    /// 500 for a fault of the gateway itself (logged where it happened).
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "The service could not complete the request because of an internal error.",
        )
    }

    /// The error for a bare status produced outside the handlers (routing, body
    /// limits, timeouts).
    pub fn from_http_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::new(
                status,
                "Request_ResourceNotFound",
                "The requested URL does not name a resource of this service: use {prefix}/identityGovernance/entitlementManagement/accessPackageAssignments.",
            ),
            StatusCode::METHOD_NOT_ALLOWED => Self::new(
                status,
                "MethodNotAllowed",
                "The HTTP method is not allowed on this resource; the Allow header lists the ones that are.",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                status,
                "RequestEntityTooLarge",
                "The request body is larger than the limit of 1 MiB.",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::unsupported_media_type(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Self::new(
                status,
                "RequestHeaderFieldsTooLarge",
                "The request headers are larger than the limit of 16 KiB.",
            ),
            // The caller was too slow to send its request.
            StatusCode::REQUEST_TIMEOUT => Self::new(
                status,
                "RequestTimeout",
                "The request body did not arrive in time.",
            ),
            StatusCode::GATEWAY_TIMEOUT => Self::new(
                status,
                "GatewayTimeout",
                "The request did not complete in time. Retry later.",
            ),
            StatusCode::SERVICE_UNAVAILABLE => Self::unavailable(),
            s if s.is_client_error() => Self::new(s, "BadRequest", "The request is invalid."),
            _ => Self::internal(),
        }
    }

    fn unavailable() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The service is temporarily unavailable. Retry after the number of seconds in the Retry-After header.",
            )
        }
    }

    /// A failed body read: too large (413), too slow (408) or broken off (400).
    pub fn from_body_rejection(rejection: &BytesRejection) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
        while let Some(error) = source {
            if error.is::<tower_http::timeout::TimeoutError>() {
                return Self::from_http_status(StatusCode::REQUEST_TIMEOUT);
            }
            source = error.source();
        }
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::from_http_status(StatusCode::PAYLOAD_TOO_LARGE),
            _ => Self::bad_request("The request body could not be read completely."),
        }
    }

    /// Maps the upstream gRPC status to HTTP. The service's own messages for a
    /// caller's mistakes pass through; anything else gets a generic message and is
    /// logged, since it may carry internals.
    pub fn from_status(status: &tonic::Status) -> Self {
        let passed = |http: StatusCode, code: &'static str| {
            Self::new(http, code, status.message().to_owned())
        };
        match status.code() {
            Code::InvalidArgument => passed(StatusCode::BAD_REQUEST, "BadRequest"),
            Code::Unauthenticated => passed(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken"),
            Code::PermissionDenied => passed(StatusCode::FORBIDDEN, "Authorization_RequestDenied"),
            Code::NotFound => passed(StatusCode::NOT_FOUND, "Request_ResourceNotFound"),
            Code::AlreadyExists => passed(StatusCode::CONFLICT, "Conflict"),
            Code::ResourceExhausted => Self {
                retry_after: Some(retry_after(status)),
                ..passed(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests")
            },
            // The upstream could not take the call, or its connection was lost under it
            // (UNKNOWN, or CANCELLED raised by this side's transport).
            _ if super::instance_lost(status) => {
                tracing::warn!(grpc.code = ?status.code(), grpc.message = status.message(), "upstream unavailable");
                Self {
                    retry_after: Some(retry_after(status)),
                    ..Self::unavailable()
                }
            }
            Code::DeadlineExceeded => Self::from_http_status(StatusCode::GATEWAY_TIMEOUT),
            code => {
                tracing::error!(grpc.code = ?code, grpc.message = status.message(), "upstream call failed");
                Self::internal()
            }
        }
    }

    /// Writes the response, with the request's ids in the body and the headers.
    pub fn render(&self, context: &RequestContext) -> Response {
        let date = OffsetDateTime::now_utc()
            .format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]"
            ))
            .unwrap_or_default();
        let body = GraphErrorBody {
            error: GraphError {
                code: self.code,
                message: &self.message,
                inner_error: InnerError {
                    date: &date,
                    request_id: &context.request_id,
                    client_request_id: context.client_request_id(),
                },
            },
        };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[derive(Serialize)]
struct GraphErrorBody<'a> {
    error: GraphError<'a>,
}

#[derive(Serialize)]
struct GraphError<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(rename = "innerError")]
    inner_error: InnerError<'a>,
}

#[derive(Serialize)]
struct InnerError<'a> {
    date: &'a str,
    #[serde(rename = "request-id")]
    request_id: &'a str,
    #[serde(rename = "client-request-id")]
    client_request_id: &'a str,
}

/// The retry delay the upstream suggested (google.rpc.RetryInfo), at least 1 s.
fn retry_after(status: &tonic::Status) -> u64 {
    status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .map_or(1, |delay| delay.as_secs().max(1))
}

/// Handlers return the error; the request-context middleware renders it with the
/// request's ids (see [`super::request_context`]).
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}
