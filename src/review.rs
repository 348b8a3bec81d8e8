//! The AdmissionReview wire format: parsing the API server's request (with kube's types) and
//! writing the response.
//!
//! The response is written with our own small serializer because the API server wants `patch` as
//! a base64 *string* (Go's encoding of `[]byte`), while kube-core 5's `AdmissionResponse` serializes
//! its `Vec<u8>` as an array of numbers, which the API server rejects.

use base64::Engine;
use json_patch::PatchOperation;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use serde::Serialize;

const KIND: &str = "AdmissionReview";
const SUPPORTED_VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

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
}

/// A parsed review: its apiVersion (echoed back) and the request.
pub struct Review {
    pub api_version: String,
    pub request: AdmissionRequest<DynamicObject>,
}

pub fn parse(body: &[u8]) -> Result<Review, ReviewError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let review: AdmissionReview<DynamicObject> = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| ReviewError::Malformed {
            path: e.path().to_string(),
            message: e.into_inner().to_string(),
        })?;
    de.end().map_err(|e| ReviewError::Malformed {
        path: ".".into(),
        message: e.to_string(),
    })?;
    if !SUPPORTED_VERSIONS.contains(&review.types.api_version.as_str()) {
        return Err(ReviewError::Version(review.types.api_version));
    }
    if review.types.kind != KIND {
        return Err(ReviewError::Kind(review.types.kind));
    }
    let api_version = review.types.api_version.clone();
    let request = review.try_into().map_err(|_| ReviewError::NoRequest)?;
    Ok(Review {
        api_version,
        request,
    })
}

/// What the webhook answers for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Allow {
        patch: Vec<PatchOperation>,
        warnings: Vec<String>,
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
    patch: Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

#[derive(Serialize)]
struct OutStatus<'a> {
    code: u16,
    message: &'a str,
}

/// Serializes the response review for `uid`. An empty patch is left out, so a pass-through
/// answer carries no `patchType` at all.
pub fn response_json(api_version: &str, uid: &str, answer: &Answer) -> Vec<u8> {
    let response = match answer {
        Answer::Allow { patch, warnings } => OutResponse {
            uid,
            allowed: true,
            status: None,
            patch_type: (!patch.is_empty()).then_some("JSONPatch"),
            patch: (!patch.is_empty()).then(|| encode_patch(patch)),
            warnings,
        },
        Answer::Deny { message, warnings } => OutResponse {
            uid,
            allowed: false,
            status: Some(OutStatus { code: 403, message }),
            patch_type: None,
            patch: None,
            warnings,
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

fn encode_patch(patch: &[PatchOperation]) -> String {
    let json = serde_json::to_vec(patch).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(json)
}
