//! What one XNAT answer means, shared by the GETs ([`super::request`]) and the login
//! ([`super::session`]): the answer read within its body cap, a failure classified (timeout,
//! connect, other), an attempt's rejection (a dead session, or an error), a login page told from
//! a document, and every request counted in the metrics. A leaf, so neither side imports the
//! other for it.

use std::time::Duration;

use reqwest::StatusCode;

use super::limit::MAX_CALL_LIFETIME;
use crate::xnat::call::is_html;
use crate::xnat::{XnatCall, XnatError};

/// What one GET got: the status, the media type XNAT said, and the body of a 200.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) content_type: Option<String>,
    pub(super) body: Option<Vec<u8>>,
}

/// Sends one GET and reads its answer: the body of a 200 only.
pub(super) async fn send(
    request: reqwest::RequestBuilder,
    call: XnatCall,
) -> Result<Answer, XnatError> {
    let response = request
        .send()
        .await
        .map_err(|e| classify(e, MAX_CALL_LIFETIME))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // A page in another media type (a login page, a proxy's) is never read: it is refused.
    let readable = content_type.as_deref().is_none_or(|t| call.reads(t));
    let body = match status {
        StatusCode::OK if readable => Some(read_body(response, MAX_CALL_LIFETIME, call).await?),
        _ => None,
    };
    Ok(Answer {
        status,
        content_type,
        body,
    })
}

/// What an answer means for `call`: its body when XNAT said it is the media type asked for (or
/// said nothing and it is not HTML); a login page (HTML) is a rejected session; another media
/// type or a 406 is [`XnatError::NotAcceptable`].
pub(super) fn read_answer(call: XnatCall, answer: Answer) -> Result<Option<Vec<u8>>, Rejected> {
    let not_acceptable = |got: Option<String>| {
        Rejected::Other(XnatError::NotAcceptable {
            path: call.path(),
            asked: call.accept(),
            got,
        })
    };
    match answer.status {
        StatusCode::OK => {
            let body = answer.body.unwrap_or_default();
            match answer.content_type {
                Some(t) if call.reads(&t) => Ok(Some(body)),
                Some(t) if is_html(&t) => Err(Rejected::Session),
                Some(t) => Err(not_acceptable(Some(crate::echo::echo(&t).to_string()))),
                None if looks_like_html(&body) && !is_xml_document(call, &body) => {
                    Err(Rejected::Session)
                }
                None => Ok(Some(body)),
            }
        }
        StatusCode::NOT_FOUND => Ok(None),
        StatusCode::UNAUTHORIZED => Err(Rejected::Session),
        StatusCode::FORBIDDEN => Err(Rejected::Other(XnatError::MissingRole {
            path: call.path(),
            role: call.role(),
        })),
        StatusCode::NOT_ACCEPTABLE => Err(not_acceptable(None)),
        s => Err(Rejected::Other(XnatError::Status(s.as_u16()))),
    }
}

/// Reads a body of at most [`XnatCall::max_body`] bytes.
pub(super) async fn read_body(
    mut response: reqwest::Response,
    timeout: Duration,
    call: XnatCall,
) -> Result<Vec<u8>, XnatError> {
    let max = call.max_body();
    let too_large = || XnatError::TooLarge {
        path: call.path(),
        limit: max,
    };
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(e, timeout))? {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub(super) fn classify(e: reqwest::Error, timeout: Duration) -> XnatError {
    if e.is_timeout() {
        XnatError::Timeout(timeout)
    } else if e.is_connect() {
        XnatError::Connect(e.without_url().to_string())
    } else {
        XnatError::Request(e.without_url().to_string())
    }
}

/// Counts one XNAT request by endpoint and status (or failure kind), with its time to headers.
pub(super) fn record(
    call: XnatCall,
    result: &Result<reqwest::Response, reqwest::Error>,
    started: std::time::Instant,
) {
    let status = match result {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(e) if e.is_connect() => "connect".into(),
        Err(_) => "error".into(),
    };
    crate::metrics::xnat_request(call.name(), status, started.elapsed());
}

/// Why one attempt failed.
pub(super) enum Rejected {
    /// The session was not accepted: log in again.
    Session,
    Other(XnatError),
}

impl Rejected {
    pub(super) fn into_error(self) -> XnatError {
        match self {
            Rejected::Session => XnatError::BadCredentials(401),
            Rejected::Other(e) => e,
        }
    }
}

/// An XML answer without a `Content-Type` (`<?xml …` or `<arc:project …`) is not a login page's
/// `<!DOCTYPE html>` or `<html>`.
fn is_xml_document(call: XnatCall, body: &[u8]) -> bool {
    let start = body.trim_ascii_start();
    call.media() == crate::xnat::call::Media::Xml
        && (start.starts_with(b"<?xml") || start.starts_with(b"<arc:"))
}

pub(super) fn looks_like_html(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}
