//! Content negotiation as XNAT does it, so a client that asks for what a resource does not offer
//! gets what it would get from XNAT: a 406.
//!
//! - `/data/...` is Restlet 1.1.10. A resource lists the media types it offers in its
//!   constructor; `Resource.handleGet` asks `Engine.getPreferredVariant` for the best one and
//!   answers **406** when there is none. For each variant the *most specific* `Accept` range that
//!   includes it gives its quality (`*/*` < `text/*` < `text/xml`); the best quality wins, a tie
//!   goes to the variant listed first, and a quality of 0 does not rule a variant out. No
//!   `Accept` header is `*/*`. `format=` is read only afterwards, in `represent`
//!   (`SecureResource.overrideVariant`): it cannot turn a 406 into an answer.
//! - `/xapi/...` is Spring MVC: an `Accept` with no range compatible with the handler's
//!   `produces` is a 406, decided when the request is mapped (after authentication, before the
//!   handler and its authorization aspect run).

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub const JSON: &str = "application/json";
pub const XML: &str = "text/xml";
pub const HTML: &str = "text/html";
pub const TEXT: &str = "text/plain";

/// `SecureResource.STANDARD_VARIANTS`, as `ProjectListResource` and `ProjectUserListResource`
/// add them.
pub const STANDARD_VARIANTS: &[&str] = &[JSON, HTML, XML];

/// One range of an `Accept` header.
struct Range<'a> {
    kind: &'a str,
    sub: &'a str,
    q: f32,
}

fn ranges(headers: &HeaderMap) -> Vec<Range<'_>> {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return vec![Range {
            kind: "*",
            sub: "*",
            q: 1.0,
        }];
    }
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .filter_map(|range| {
            let mut parts = range.split(';');
            let (kind, sub) = parts.next()?.trim().split_once('/')?;
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse().ok())
                .unwrap_or(1.0);
            Some(Range {
                kind: kind.trim(),
                sub: sub.trim(),
                q,
            })
        })
        .collect()
}

/// How specifically `range` includes `media` (`None`: it does not).
fn specificity(range: &Range<'_>, media: &str) -> Option<u32> {
    let (kind, sub) = media.split_once('/')?;
    match (range.kind, range.sub) {
        ("*", "*") => Some(0),
        (k, "*") if k.eq_ignore_ascii_case(kind) => Some(1000),
        (k, s) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(sub) => Some(1100),
        _ => None,
    }
}

/// Restlet 1.1's choice among `variants`; `None` is a 406.
pub fn restlet(headers: &HeaderMap, variants: &[&'static str]) -> Option<&'static str> {
    let ranges = ranges(headers);
    let mut best: Option<(&'static str, f32)> = None;
    for &v in variants {
        let quality = ranges
            .iter()
            .filter_map(|r| specificity(r, v).map(|s| (s, r.q)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, q)| q);
        if let Some(q) = quality
            && best.is_none_or(|(_, b)| q > b)
        {
            best = Some((v, q));
        }
    }
    best.map(|(v, _)| v)
}

/// Whether Spring MVC maps a request with this `Accept` to a handler that `produces` `media`.
pub fn spring(headers: &HeaderMap, produces: &str) -> bool {
    ranges(headers)
        .iter()
        .any(|r| specificity(r, produces).is_some())
}

/// Spring's 406 (`HttpMediaTypeNotAcceptableException`), or `None` when the request may go on.
pub fn spring_refusal(headers: &HeaderMap, produces: &str) -> Option<Response> {
    (!spring(headers, produces)).then(not_acceptable)
}

/// The 406 both frameworks answer: no entity the client could use.
pub fn not_acceptable() -> Response {
    (
        StatusCode::NOT_ACCEPTABLE,
        [(header::CONTENT_TYPE, HTML)],
        "",
    )
        .into_response()
}

/// The media type `format=` asks for, as `SecureResource.getRequestedMediaType` reads it.
pub fn requested_format(query: Option<&str>) -> Option<&'static str> {
    let format = query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("format="))?;
    match format {
        "json" => Some(JSON),
        "xml" => Some(XML),
        "html" => Some(HTML),
        "txt" => Some(TEXT),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, v.parse().unwrap());
        h
    }

    #[test]
    fn restlet_picks_the_best_quality_by_the_most_specific_range() {
        let none = HeaderMap::new();
        // `ProjectArchive`: text/xml only.
        assert_eq!(restlet(&none, &[XML]), Some(XML));
        assert_eq!(restlet(&accept("application/json"), &[XML]), None);
        assert_eq!(restlet(&accept("text/*"), &[XML]), Some(XML));
        assert_eq!(
            restlet(&accept("application/json, */*;q=0.1"), &[XML]),
            Some(XML)
        );
        // `ExperimentResource`: HTML first, then XML; no Accept is HTML.
        assert_eq!(restlet(&none, &[HTML, XML]), Some(HTML));
        assert_eq!(restlet(&accept("text/xml"), &[HTML, XML]), Some(XML));
        assert_eq!(restlet(&accept("application/json"), &[HTML, XML]), None);
        // The most specific range decides a variant's quality, not the highest q.
        assert_eq!(
            restlet(&accept("text/*;q=0.9, text/html;q=0.1"), &[HTML, XML]),
            Some(XML)
        );
        // A quality of 0 does not rule a variant out in Restlet 1.1.
        assert_eq!(restlet(&accept("text/xml;q=0"), &[XML]), Some(XML));
    }

    #[test]
    fn spring_maps_only_a_compatible_accept() {
        assert!(spring(&HeaderMap::new(), JSON));
        assert!(spring(&accept("application/*"), JSON));
        assert!(!spring(&accept("text/xml"), JSON));
        assert_eq!(
            requested_format(Some("format=json&allDataOverride=true")),
            Some(JSON)
        );
    }
}
