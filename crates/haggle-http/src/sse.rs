//! The live feed: Server-Sent Events of a market's log, filtered by what the caller may see.
//! A stream wakes on this process's writes and also polls, so writes by other replicas arrive too;
//! it ends when its token is revoked.

use crate::AppState;
use crate::extract::{Auth, Path, Query, Result};
use crate::routes::EventParams;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::StreamExt;
use futures_util::stream::{self, Stream};
use haggle_core::limits::STREAM_BATCH;
use std::collections::VecDeque;
use std::convert::Infallible;

#[utoipa::path(get, path = "/v1/markets/{market}/events/stream", params(("market" = i64, Path), EventParams), responses((status = 200, description = "text/event-stream of events; each SSE id is the event's seq")), security(("bearer" = [])))]
pub async fn stream_events(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(m): Path<i64>,
    Query(q): Query<EventParams>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = std::result::Result<SseEvent, Infallible>>>> {
    let viewer = s.svc.viewer(&c, m).await?;
    s.svc.market(&c, m).await?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let after = resume.unwrap_or(q.after);
    let rx = s.svc.subscribe();
    let revoked = s.svc.clone().until_revoked(c.scope.clone());
    let state = (s, rx, after, VecDeque::new());
    let events = stream::unfold(state, move |(s, mut rx, mut after, mut buf)| async move {
        loop {
            if let Some(e) = buf.pop_front() {
                let e: haggle_core::Event = e;
                let data = serde_json::to_string(&e).expect("events serialise");
                let sse = SseEvent::default()
                    .id(e.seq.to_string())
                    .event(e.kind())
                    .data(data);
                return Some((Ok(sse), (s, rx, after, buf)));
            }
            match s.svc.events_as(m, viewer, after, STREAM_BATCH).await {
                Ok(batch) if !batch.is_empty() => {
                    after = batch.last().map_or(after, |e| e.seq);
                    buf.extend(batch);
                }
                Ok(_) => {
                    let _ = tokio::time::timeout(s.svc.feed_poll(), rx.recv()).await;
                }
                // The store is unreachable: end the stream; the client reconnects with Last-Event-ID.
                Err(_) => return None,
            }
        }
    });
    Ok(Sse::new(events.take_until(revoked)).keep_alive(KeepAlive::default()))
}
