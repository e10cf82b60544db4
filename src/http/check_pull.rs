//! `POST /api/v1/check-pull`: the what-if. The body is a
//! [`Question`] (an image's layers as the asker measured them in the
//! registry); the answer is this node's [`crate::what_if::Answer`], computed
//! from the inventory of the current [`super::Snapshot`] with no outbound
//! request.
//!
//! It is the only route that reads a body, so it bounds its own: the
//! declared length is checked first, at most [`MAX_BODY_BYTES`] are read,
//! within [`Limits::body_read_timeout`]. Parsing and judging run off the
//! async workers ([`tokio::task::spawn_blocking`]), at most
//! [`Limits::max_questions`] at once, so questions never hold up a scrape.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::Semaphore;

use super::{current, not_ready, Limits, Snapshots};
use crate::inventory::Scanned;
use crate::what_if::{self, Question, MAX_BODY_BYTES};

/// What the handler needs: the snapshots, the body's deadline, and the
/// turns to compute an answer.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    snapshots: Snapshots,
    body_read_timeout: Duration,
    turns: Arc<Semaphore>,
}

impl Endpoint {
    pub(super) fn new(snapshots: Snapshots, limits: &Limits) -> Endpoint {
        Endpoint {
            snapshots,
            body_read_timeout: limits.body_read_timeout,
            turns: Arc::new(Semaphore::new(limits.max_questions.max(1))),
        }
    }
}

/// Answers a question: 415 unless JSON, 503 before the first inventory,
/// 413 / 408 / 400 for a body too big, too slow or not a question, else
/// 200 with the answer.
pub(super) async fn answer(
    State(endpoint): State<Endpoint>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !is_json(&headers) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a question is sent as Content-Type: application/json".into(),
        );
    }
    let snap = current(&endpoint.snapshots);
    let Some(node) = snap.node.clone().filter(|_| snap.ready) else {
        return not_ready();
    };
    let body = match read(body, endpoint.body_read_timeout).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    // The semaphore is never closed; the turn is held by the computation
    // itself, so one cut off by the request timeout still counts.
    let Ok(turn) = Arc::clone(&endpoint.turns).acquire_owned().await else {
        return not_ready();
    };
    let computed = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        respond(&body, &node)
    });
    computed.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "answering a what-if question failed");
        refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the answer could not be computed".into(),
        )
    })
}

/// Whether the request says its body is JSON (parameters such as the
/// charset aside).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The body, at most [`MAX_BODY_BYTES`], arrived within `deadline`.
async fn read(body: Body, deadline: Duration) -> Result<Bytes, Response> {
    let too_big = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {MAX_BODY_BYTES} bytes"),
        )
    };
    if usize::try_from(body.size_hint().lower()).map_or(true, |n| n > MAX_BODY_BYTES) {
        return Err(too_big());
    }
    let collected = tokio::time::timeout(deadline, Limited::new(body, MAX_BODY_BYTES).collect());
    match collected.await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_big()),
        Ok(Err(e)) => Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("the body could not be read: {e}"),
        )),
        Err(_) => Err(refuse(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {deadline:?}"),
        )),
    }
}

/// The answer to `body` on `node` as JSON, or 400 saying what is wrong
/// with the question.
fn respond(body: &[u8], node: &Scanned) -> Response {
    let question = match Question::parse(body) {
        Ok(question) => question,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("bad question: {e}")),
    };
    let answer = what_if::answer_from_inventory(&question, node);
    match serde_json::to_vec_pretty(&answer) {
        Ok(mut json) => {
            json.push(b'\n');
            ([(header::CONTENT_TYPE, "application/json")], json).into_response()
        }
        Err(e) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the answer could not be written: {e}"),
        ),
    }
}

/// A refusal with its reason in words, on one line.
fn refuse(status: StatusCode, why: String) -> Response {
    (status, format!("{why}\n")).into_response()
}
