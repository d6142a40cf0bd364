use ::http::{HeaderMap, StatusCode};
use std::fmt;

/// A gRPC status code (the value of `grpc-status`).
///
/// ```
/// use tower_breaker::grpc::Code;
///
/// assert_eq!(Code::from_i32(14), Code::Unavailable);
/// assert_eq!(Code::from_i32(99), Code::Unknown); // not a code: UNKNOWN, as tonic reads it
/// assert_eq!(Code::Unavailable.as_str(), "UNAVAILABLE");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// `OK` (0).
    Ok = 0,
    /// `CANCELLED` (1).
    Cancelled = 1,
    /// `UNKNOWN` (2).
    Unknown = 2,
    /// `INVALID_ARGUMENT` (3).
    InvalidArgument = 3,
    /// `DEADLINE_EXCEEDED` (4).
    DeadlineExceeded = 4,
    /// `NOT_FOUND` (5).
    NotFound = 5,
    /// `ALREADY_EXISTS` (6).
    AlreadyExists = 6,
    /// `PERMISSION_DENIED` (7).
    PermissionDenied = 7,
    /// `RESOURCE_EXHAUSTED` (8).
    ResourceExhausted = 8,
    /// `FAILED_PRECONDITION` (9).
    FailedPrecondition = 9,
    /// `ABORTED` (10).
    Aborted = 10,
    /// `OUT_OF_RANGE` (11).
    OutOfRange = 11,
    /// `UNIMPLEMENTED` (12).
    Unimplemented = 12,
    /// `INTERNAL` (13).
    Internal = 13,
    /// `UNAVAILABLE` (14).
    Unavailable = 14,
    /// `DATA_LOSS` (15).
    DataLoss = 15,
    /// `UNAUTHENTICATED` (16).
    Unauthenticated = 16,
}

impl Code {
    /// How many codes there are.
    pub(crate) const COUNT: usize = 17;

    const ALL: [Code; Code::COUNT] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code with this number; a number that is not a code is `Unknown`.
    pub fn from_i32(code: i32) -> Code {
        usize::try_from(code)
            .ok()
            .and_then(|i| Code::ALL.get(i).copied())
            .unwrap_or(Code::Unknown)
    }

    /// The code the gRPC spec assigns to an HTTP status answered without `grpc-status`
    /// (usually by a proxy): 400 `INTERNAL`, 401 `UNAUTHENTICATED`, 403 `PERMISSION_DENIED`,
    /// 404 `UNIMPLEMENTED`, 502/503/504 `UNAVAILABLE`, anything else `UNKNOWN`. One change:
    /// 429 is `RESOURCE_EXHAUSTED` (the spec says `UNAVAILABLE`), so that a proxy's rate limit
    /// cools the breaker down instead of counting as an outage.
    pub fn from_http_status(status: StatusCode) -> Code {
        match status.as_u16() {
            200 => Code::Ok,
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 => Code::ResourceExhausted,
            502..=504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    /// The code's name as the gRPC spec writes it (`UNAVAILABLE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `grpc-status` in `headers` (response headers or trailers): `None` when absent,
/// `Unknown` when present but not a code (as tonic reads it).
///
/// ```
/// use tower_breaker::grpc::{Code, grpc_status};
///
/// let mut trailers = http::HeaderMap::new();
/// assert_eq!(grpc_status(&trailers), None);
/// trailers.insert("grpc-status", "4".parse()?);
/// assert_eq!(grpc_status(&trailers), Some(Code::DeadlineExceeded));
/// trailers.insert("grpc-status", "four".parse()?);
/// assert_eq!(grpc_status(&trailers), Some(Code::Unknown));
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
pub fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?;
    let code = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<i32>().ok())
        .map_or(Code::Unknown, Code::from_i32);
    Some(code)
}
