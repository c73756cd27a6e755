//! The live stream (`/ui/events`): server-sent events that tell open pages something changed,
//! so they refresh the regions that show it.

use std::convert::Infallible;

use warp::Reply;

use super::reply::Page;
use super::session::{Ctx, require_401};
use crate::domain::Change;

pub(super) fn change_event(change: &Change) -> warp::sse::Event {
    let name = match change {
        Change::Package { .. } => "package",
        Change::Decided { .. } => "decided",
        Change::FeedbackResults { .. } => "feedback-results",
    };
    let data = serde_json::to_string(change).unwrap_or_else(|_| "{}".into());
    warp::sse::Event::default().event(name).data(data)
}

pub(super) async fn live(ctx: Ctx) -> Page {
    require_401(&ctx).await?;
    let changes = ctx.sphere.subscribe();
    let closed = ctx.sphere.live_closed();
    let stream =
        futures_util::stream::unfold((changes, closed), |(mut changes, mut closed)| async move {
            if *closed.borrow() {
                return None;
            }
            let event = tokio::select! {
                received = changes.recv() => match received {
                    Ok(change) => change_event(&change),
                    // Too far behind: the page reloads everything instead.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        warp::sse::Event::default().event("lagged").data("{}")
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
                _ = closed.wait_for(|c| *c) => return None,
            };
            Some((Ok::<_, Infallible>(event), (changes, closed)))
        });
    Ok(warp::sse::reply(warp::sse::keep_alive().stream(stream)).into_response())
}
