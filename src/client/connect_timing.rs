//! Time spent opening connections (DNS, TCP, TLS), reported apart from TTFB.
//!
//! reqwest hides its connector, but accepts a tower layer around it. The layer times
//! each connect and stores the duration in a task-local cell that [`scope`] sets up
//! around one request, so the figure lands on the request that paid for it. A reused
//! connection (keep-alive) leaves the cell empty.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// A connection opened for the request: how long it took and when it was ready.
#[derive(Debug, Clone, Copy)]
pub struct Connected {
    pub took_us: u64,
    pub ready_at: Instant,
}

tokio::task_local! {
    static CONNECT_US: Cell<Option<Connected>>;
}

/// Run `fut` with a fresh cell; returns its output and the connection it opened.
pub async fn scope<F: Future>(fut: F) -> (F::Output, Option<Connected>) {
    CONNECT_US
        .scope(Cell::new(None), async move {
            let out = fut.await;
            (out, CONNECT_US.with(|c| c.get()))
        })
        .await
}

#[derive(Clone, Copy, Default)]
pub struct TimingLayer;

impl<S> tower_layer::Layer<S> for TimingLayer {
    type Service = Timing<S>;
    fn layer(&self, inner: S) -> Timing<S> {
        Timing { inner }
    }
}

#[derive(Clone)]
pub struct Timing<S> {
    inner: S,
}

impl<S, R> tower_service::Service<R> for Timing<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let start = Instant::now();
            let out = fut.await;
            if out.is_ok() {
                let ready_at = Instant::now();
                let took_us = super::micros(ready_at - start);
                // Outside a request's scope (a connect finished in the background) the
                // figure has no request to belong to.
                let _ = CONNECT_US.try_with(|c| c.set(Some(Connected { took_us, ready_at })));
            }
            out
        })
    }
}
