//! The AdmissionReview wire format: parsing the API server's request and writing the response.
//!
//! The request is read into borrowed views of just the fields the webhook uses (with kube's
//! `GroupVersionKind` and `Operation`), the pod's spec included, in one pass over the body. Only
//! a body that pass cannot read is read again the careful way: the object kept raw until its kind
//! is known, the spec raw until the decision reads it (an unreadable spec is the decision's to
//! report, not a malformed review), and errors with the path where the body is wrong. Parsing
//! alice's 6 KB fixture this way takes about a quarter of the time of kube's
//! `AdmissionReview<DynamicObject>`, which builds a `Value` tree of the whole pod (see
//! docs/performance.md).
//!
//! The response is written with our own small serializer because the API server wants `patch` as
//! a base64 *string* (Go's encoding of `[]byte`), while kube-core 5's `AdmissionResponse` serializes
//! its `Vec<u8>` as an array of numbers, which the API server rejects.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine;
use json_patch::PatchOperation;
use kube::core::GroupVersionKind;
use kube::core::admission::Operation;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use serde::de::IgnoredAny;

use crate::echo::echo;
use crate::pod::{PodMeta, SpecView};

const KIND: &str = "AdmissionReview";
/// The only version registered (`admissionReviewVersions: ["v1"]`).
const API_VERSION: &str = "admission.k8s.io/v1";

/// Why a body is not a review we can answer; the server turns it into an HTTP 400.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("body is not a valid AdmissionReview: at `{path}`: {message}")]
    Malformed { path: String, message: String },
    #[error("unsupported apiVersion {0:?}; expected admission.k8s.io/v1")]
    Version(String),
    #[error("kind is {0:?}; expected AdmissionReview")]
    Kind(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error(
        "request.uid {0:?} is not a UID (letters, digits and `-`, at most {MAX_UID_LEN} of them)"
    )]
    Uid(String),
}

/// The longest `request.uid` answered: the API server sends a UUID (36 characters), and the uid
/// is echoed in the answer and the log.
pub const MAX_UID_LEN: usize = 128;

fn is_uid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_UID_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a, O> {
    #[serde(borrow)]
    api_version: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default = "Option::default")]
    request: Option<Request<'a, O>>,
}

/// A parsed review, borrowing from the request body.
pub struct Review<'a> {
    /// Echoed back in the response.
    pub api_version: Cow<'a, str>,
    pub request: Request<'a>,
    /// The object, read as a pod when the request is about a core/v1 Pod.
    pub pod: Option<Pod<'a>>,
}

/// `request` of an AdmissionReview: the fields the webhook reads. `O` is how the object is read
/// while parsing; a parsed [`Review`] holds the object apart, as its `pod`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a, O = IgnoredAny> {
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    pub kind: GroupVersionKind,
    #[serde(borrow, default)]
    pub sub_resource: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    pub operation: Operation,
    #[serde(borrow)]
    pub user_info: UserInfo<'a>,
    #[serde(default = "Option::default")]
    object: Option<O>,
    /// The request makes nothing (`kubectl create --dry-run=server`): no Event about it.
    #[serde(default)]
    pub dry_run: Option<bool>,
}

#[derive(Deserialize)]
pub struct UserInfo<'a> {
    #[serde(borrow, default)]
    pub username: Option<Cow<'a, str>>,
}

impl<'a, O> Request<'a, O> {
    /// The request without its object, and the object.
    fn split(self) -> (Request<'a>, Option<O>) {
        let Request {
            uid,
            kind,
            sub_resource,
            name,
            namespace,
            operation,
            user_info,
            object,
            dry_run,
        } = self;
        let request = Request {
            uid,
            kind,
            sub_resource,
            name,
            namespace,
            operation,
            user_info,
            object: None,
            dry_run,
        };
        (request, object)
    }

    pub fn is_core_pod(&self) -> bool {
        self.kind.group.is_empty() && self.kind.version == "v1" && self.kind.kind == "Pod"
    }

    pub fn is_dry_run(&self) -> bool {
        self.dry_run == Some(true)
    }

    pub fn requester(&self) -> &str {
        self.user_info.username.as_deref().unwrap_or_default()
    }
}

/// The parts of a pod the webhook reads.
pub struct Pod<'a> {
    pub metadata: PodMeta<'a>,
    pub spec: PodSpec<'a>,
}

/// A pod's spec: read with the review, or raw when that pass could not read it (the decision
/// reads it then, and reports it unreadable).
pub enum PodSpec<'a> {
    Read(SpecView<'a>),
    Raw(Option<&'a RawValue>),
}

/// A pod read in the review's one pass.
#[derive(Deserialize)]
struct PodRead<'a> {
    #[serde(borrow)]
    metadata: PodMeta<'a>,
    #[serde(borrow, default)]
    spec: SpecView<'a>,
}

/// A pod read the careful way: its spec kept raw.
#[derive(Deserialize)]
struct PodRaw<'a> {
    #[serde(borrow)]
    metadata: PodMeta<'a>,
    #[serde(borrow, default)]
    spec: Option<&'a RawValue>,
}

/// Both parts come from the request (keys, fragments of values): bounded and escaped here, once,
/// for the answer and the log alike.
fn malformed(path: impl AsRef<str>, message: impl ToString) -> ReviewError {
    ReviewError::Malformed {
        path: echo(path.as_ref()).to_string(),
        message: echo(&message.to_string()).to_string(),
    }
}

/// Parses a review body: one borrowed pass that reads the pod whole; a body it cannot read is
/// read again the careful way ([`parse_carefully`]), which says where it is wrong.
pub fn parse(body: &[u8]) -> Result<Review<'_>, ReviewError> {
    // JSON is UTF-8; serde skips the fields it does not read without checking them.
    let body = std::str::from_utf8(body).map_err(|e| malformed(".", format!("not UTF-8: {e}")))?;
    let Ok(review) = serde_json::from_str::<ReviewIn<'_, PodRead<'_>>>(body) else {
        return parse_carefully(body);
    };
    check(&review)?;
    let (request, object) = review.request.ok_or(ReviewError::NoRequest)?.split();
    let pod = object.filter(|_| request.is_core_pod()).map(|p| Pod {
        metadata: p.metadata,
        spec: PodSpec::Read(p.spec),
    });
    Ok(Review {
        api_version: review.api_version,
        request,
        pod,
    })
}

/// The envelope's checks: version, kind and uid.
fn check<O>(review: &ReviewIn<'_, O>) -> Result<(), ReviewError> {
    if review.api_version != API_VERSION {
        return Err(ReviewError::Version(echo(&review.api_version).to_string()));
    }
    if review.kind != KIND {
        return Err(ReviewError::Kind(echo(&review.kind).to_string()));
    }
    match &review.request {
        Some(request) if !is_uid(&request.uid) => {
            Err(ReviewError::Uid(echo(&request.uid).to_string()))
        }
        _ => Ok(()),
    }
}

/// The careful parse: the object raw until its kind is known, the spec raw until the decision
/// reads it, and path-tracking errors.
fn parse_carefully(body: &str) -> Result<Review<'_>, ReviewError> {
    let review: ReviewIn<'_, &RawValue> = from_json(body)?;
    check(&review)?;
    let (request, object) = review.request.ok_or(ReviewError::NoRequest)?.split();
    let pod = match object {
        Some(raw) if request.is_core_pod() => {
            let pod = from_json::<PodRaw<'_>>(raw.get()).map_err(|e| match e {
                ReviewError::Malformed { path, message } if path == "." => {
                    malformed("request.object", message)
                }
                ReviewError::Malformed { path, message } => {
                    malformed(format!("request.object.{path}"), message)
                }
                other => other,
            })?;
            Some(Pod {
                metadata: pod.metadata,
                spec: PodSpec::Raw(pod.spec),
            })
        }
        _ => None,
    };
    Ok(Review {
        api_version: review.api_version,
        request,
        pod,
    })
}

fn from_json<'a, T: Deserialize<'a>>(json: &'a str) -> Result<T, ReviewError> {
    serde_json::from_str(json).map_err(|plain| {
        let mut de = serde_json::Deserializer::from_str(json);
        match serde_path_to_error::deserialize::<_, T>(&mut de) {
            Err(e) => malformed(e.path().to_string(), e.into_inner()),
            // Only trailing bytes fail the plain parse but not this one.
            Ok(_) => malformed(".", plain),
        }
    })
}

/// What the webhook answers for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Allow {
        patch: Vec<PatchOperation>,
        warnings: Vec<String>,
        /// `auditAnnotations` (key → value); the API server prefixes the webhook's name.
        audit: Vec<(&'static str, String)>,
    },
    Deny {
        message: String,
        warnings: Vec<String>,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Out<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: OutResponse<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutResponse<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<OutStatus<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: BTreeMap<&'static str, &'a str>,
}

#[derive(Serialize)]
struct OutStatus<'a> {
    code: u16,
    message: &'a str,
}

/// The pod a review is about, `(namespace, name)`, from its first bytes alone: the request's
/// `name` and `namespace`, which the API server writes before the object. For a review that was
/// refused before it was read whole, so its user can still be told; `None` when they are not
/// there, or not names a pod could have.
pub fn pod_named_in(head: &[u8]) -> Option<(String, String)> {
    let head = &head[..head.len().min(8 * 1024)];
    let start = find(head, b"\"request\"")?;
    let window = &head[start..];
    let window = &window[..find(window, b"\"object\"").unwrap_or(window.len())];
    let field = |key: &[u8]| -> Option<String> {
        let at = find(window, key)? + key.len();
        let rest = window[at..].trim_ascii_start().strip_prefix(b":")?;
        let rest = rest.trim_ascii_start().strip_prefix(b"\"")?;
        let value = &rest[..find(rest, b"\"")?];
        let ok = !value.is_empty()
            && value.len() <= 253
            && value
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(b));
        ok.then(|| String::from_utf8_lossy(value).into_owned())
    };
    Some((field(b"\"namespace\"")?, field(b"\"name\"")?))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Serializes the response review for `uid`. An empty patch is left out, so a pass-through
/// answer carries no `patchType` at all.
pub fn response_json(api_version: &str, uid: &str, answer: &Answer) -> Vec<u8> {
    let response = match answer {
        Answer::Allow {
            patch,
            warnings,
            audit,
        } => OutResponse {
            uid,
            allowed: true,
            status: None,
            patch_type: (!patch.is_empty()).then_some("JSONPatch"),
            patch: (!patch.is_empty()).then(|| encode_patch(patch)),
            warnings,
            audit_annotations: audit.iter().map(|(k, v)| (*k, v.as_str())).collect(),
        },
        Answer::Deny { message, warnings } => OutResponse {
            uid,
            allowed: false,
            status: Some(OutStatus { code: 403, message }),
            patch_type: None,
            patch: None,
            warnings,
            audit_annotations: BTreeMap::new(),
        },
    };
    let out = Out {
        api_version,
        kind: KIND,
        response,
    };
    // Serializing plain strings, bools and numbers into a Vec cannot fail.
    serde_json::to_vec(&out).unwrap_or_default()
}

/// The patch as a JSON string of base64, written out as it stands: base64 needs no escaping, so
/// the serializer need not scan the longest string of the answer byte by byte again.
fn encode_patch(patch: &[PatchOperation]) -> Box<RawValue> {
    let json = serde_json::to_vec(patch).unwrap_or_default();
    let mut quoted = String::with_capacity(json.len().div_ceil(3) * 4 + 2);
    quoted.push('"');
    base64::engine::general_purpose::STANDARD.encode_string(&json, &mut quoted);
    quoted.push('"');
    // Always valid JSON; were it ever not, the escaping way still gives the same patch.
    RawValue::from_string(quoted).unwrap_or_else(|_| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(&json);
        serde_json::value::to_raw_value(&encoded).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_is_named_by_the_first_bytes_of_a_review() {
        let review = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kubespawner-7.1/alice-default.json"
        ));
        let named = Some(("jupyter".to_owned(), "jupyter-alice".to_owned()));
        assert_eq!(pod_named_in(review), named);
        // What a refusal read: the head, cut inside the pod.
        let object = review.windows(8).position(|w| w == b"\"object\"").unwrap();
        assert_eq!(pod_named_in(&review[..object + 40]), named);
        assert_eq!(pod_named_in(&review[..20]), None);
        let forged = br#"{"request":{"name":"Robert'); --","namespace":"jupyter","object":{}}}"#;
        assert_eq!(pod_named_in(forged), None, "not a name a pod could have");
    }

    fn review(object: &str) -> String {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{
            "uid":"u-1","kind":{{"group":"","version":"v1","kind":"Pod"}},
            "operation":"CREATE","userInfo":{{"username":"hub"}},"object":{object}}}}}"#
        )
    }

    #[test]
    fn a_pod_is_read_in_one_pass_and_an_odd_spec_is_left_to_the_decision() {
        let body = review(r#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c"}]}}"#);
        let r = parse(body.as_bytes()).unwrap();
        let pod = r.pod.unwrap();
        assert!(matches!(&pod.spec, PodSpec::Read(s) if s.containers[0].name == "c"));

        // A spec the views cannot read is not a malformed review: it reaches the decision raw.
        let body = review(r#"{"metadata":{"name":"p"},"spec":{"containers":"none"}}"#);
        let r = parse(body.as_bytes()).unwrap();
        assert!(matches!(r.pod.unwrap().spec, PodSpec::Raw(Some(_))));

        // A malformed review still says where.
        let body = review(r#"{"metadata":{"labels":{"a":1}}}"#);
        let Err(ReviewError::Malformed { path, .. }) = parse(body.as_bytes()) else {
            panic!("not malformed");
        };
        assert_eq!(path, "request.object.metadata.labels.a");
    }

    #[test]
    fn only_a_core_pod_is_read_as_a_pod() {
        let body = review(r#"{"metadata":{"name":"p"}}"#)
            .replace(r#""kind":"Pod""#, r#""kind":"Service""#);
        assert!(parse(body.as_bytes()).unwrap().pod.is_none());
    }
}
