//! Stream construction that guarantees the reference's terminal sequence: exactly one
//! `complete`, always last; on a fatal error `[error_detail,] error, complete{ok:false}`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::frames::{Complete, ErrorDetail, ErrorFrame, Event, Step};
use super::value::{Dict, Value};

/// Text the reference uses when a stream is cancelled (server shutdown).
pub const CANCELLED_TEXT: &str = "Server shutdown or request cancelled.";

/// Hands progress frames from sync code to the stream (the reference's bridge).
///
/// `complete` and `error` frames are reserved for the guard and are dropped here (with a
/// warning): an early `error` would make the plugin's scheduler stop reading, and `complete`
/// must be last. Sending after the client went away is a no-op.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<Event>,
}

impl EventSink {
    /// Queues a frame.
    pub fn emit(&self, event: impl Into<Event>) {
        let event = event.into();
        if matches!(event.name(), "complete" | "error") {
            tracing::warn!(
                event = event.name(),
                "terminal SSE frame sent through a sink; dropped"
            );
            return;
        }
        let _ = self.tx.send(event);
    }

    /// Queues the legacy `step` frame for a `send_json`-style payload.
    pub fn legacy(&self, payload: Dict) {
        self.emit(Event::legacy(payload));
    }

    /// Whether the stream's consumer is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A fatal error: what the terminal `error`/`complete` frames say.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// `error.error` (`str(exc)`).
    pub error: String,
    /// `error.detail` (usually the same text).
    pub detail: Value,
    /// `complete.errors[0].detail` (usually the same text).
    pub errors_detail: Value,
    /// `complete.message`; `None` uses the guard's failed (or cancelled) message.
    pub message: Option<String>,
    /// An `error_detail` frame to send before `error` (full-update does).
    pub error_detail: Option<ErrorDetail>,
    /// Whether this is a cancellation (selects the guard's cancelled message).
    pub cancelled: bool,
}

impl Failure {
    /// A failure whose error, detail and `errors[0].detail` are all `text`.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        Failure {
            detail: Value::Str(text.clone()),
            errors_detail: Value::Str(text.clone()),
            error: text,
            message: None,
            error_detail: None,
            cancelled: false,
        }
    }

    /// The reference's cancellation failure (`"Server shutdown or request cancelled."`).
    pub fn cancelled() -> Self {
        Failure {
            cancelled: true,
            ..Failure::new(CANCELLED_TEXT)
        }
    }

    /// With a custom `complete.message`.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// With an `error_detail` frame before `error`.
    #[must_use]
    pub fn with_error_detail(mut self, detail: ErrorDetail) -> Self {
        self.error_detail = Some(detail);
        self
    }
}

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::new(e.to_string())
    }
}

/// Builds streams that always end with `complete`.
#[derive(Debug, Clone)]
pub struct StreamGuard {
    step: String,
    failed_message: String,
    cancelled_message: String,
}

impl StreamGuard {
    /// A guard for stage `step` (used as `error.step`); messages default to
    /// `"<step> sync failed."` / `"<step> sync cancelled."`.
    pub fn new(step: impl Into<String>) -> Self {
        let step = step.into();
        StreamGuard {
            failed_message: format!("{step} sync failed."),
            cancelled_message: format!("{step} sync cancelled."),
            step,
        }
    }

    /// Overrides the failure `complete.message`.
    #[must_use]
    pub fn failed_message(mut self, message: impl Into<String>) -> Self {
        self.failed_message = message.into();
        self
    }

    /// Overrides the cancellation `complete.message`.
    #[must_use]
    pub fn cancelled_message(mut self, message: impl Into<String>) -> Self {
        self.cancelled_message = message.into();
        self
    }

    /// The terminal frames for `failure`: `[error_detail,] error, complete{ok:false}`.
    pub fn failure_events(&self, failure: Failure) -> Vec<Event> {
        let message = failure.message.unwrap_or_else(|| {
            if failure.cancelled {
                self.cancelled_message.clone()
            } else {
                self.failed_message.clone()
            }
        });
        let mut events = Vec::with_capacity(3);
        if let Some(detail) = failure.error_detail {
            events.push(Event::ErrorDetail(detail));
        }
        events.push(Event::Error(ErrorFrame {
            step: self.step.clone(),
            error: failure.error,
            detail: failure.detail,
        }));
        events.push(Event::Complete(Complete::failure(
            message,
            failure.errors_detail,
        )));
        events
    }

    /// Terminal frames for a `complete` the work produced: a failing one gets its `error` first.
    fn completion_events(&self, complete: Complete) -> Vec<Event> {
        let mut events = Vec::with_capacity(2);
        if !complete.ok {
            let text = complete
                .errors
                .first()
                .map(|e| e.detail.py_str())
                .unwrap_or_else(|| complete.message.clone());
            events.push(Event::Error(ErrorFrame::new(self.step.clone(), text)));
        }
        events.push(Event::Complete(complete));
        events
    }

    /// Runs `work` as a task; frames it sends through its [`EventSink`] are streamed in order,
    /// then `Ok(complete)` ends the stream with that `complete` (preceded by `error` if it is
    /// not ok), and `Err(failure)` or a panic with [`StreamGuard::failure_events`]. Dropping the
    /// stream (client gone) aborts the task. Must be called inside a Tokio runtime (it spawns).
    pub fn run<F, Fut>(self, work: F) -> impl Stream<Item = Event> + Send + 'static
    where
        F: FnOnce(EventSink) -> Fut,
        Fut: Future<Output = Result<Complete, Failure>> + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = AbortOnDrop(tokio::spawn(work(EventSink { tx })));
        let state = RunState::Running {
            rx,
            task,
            guard: self,
        };
        futures::stream::unfold(state, RunState::next)
    }

    /// Wraps an existing frame stream: forwards frames until the first `complete` (anything
    /// after it is dropped); a failing `complete` not preceded by `error` gets one; a stream
    /// that ends without `complete` gets `error` + `complete{ok:false}`.
    pub fn wrap<S>(self, events: S) -> impl Stream<Item = Event> + Send + 'static
    where
        S: Stream<Item = Event> + Send + 'static,
    {
        let state = WrapState {
            events: Some(Box::pin(events)),
            guard: self,
            saw_error: false,
            tail: VecDeque::new(),
        };
        futures::stream::unfold(state, WrapState::next)
    }
}

/// Frames of one single-stage route, like the reference's `sse_stream_generator`:
/// `step started`, the work's frames, then `step completed {result}` and
/// `complete {ok:true, result}`, or `error` + `complete {ok:false}`.
#[derive(Debug, Clone)]
pub struct Stage {
    step: String,
    started_message: String,
    finished_message: String,
    complete_message: String,
    guard: StreamGuard,
}

impl Stage {
    /// A stage named `step` with the reference's default messages: `"Starting <step>
    /// synchronization."`, `"<step> synchronization finished."`, `"<step> sync completed."`,
    /// `"<step> sync failed."`, `"<step> sync cancelled."`.
    pub fn new(step: impl Into<String>) -> Self {
        let step = step.into();
        Stage {
            started_message: format!("Starting {step} synchronization."),
            finished_message: format!("{step} synchronization finished."),
            complete_message: format!("{step} sync completed."),
            guard: StreamGuard::new(step.clone()),
            step,
        }
    }

    /// Overrides the `step started` message.
    #[must_use]
    pub fn started_message(mut self, message: impl Into<String>) -> Self {
        self.started_message = message.into();
        self
    }

    /// Overrides the `step completed` message.
    #[must_use]
    pub fn finished_message(mut self, message: impl Into<String>) -> Self {
        self.finished_message = message.into();
        self
    }

    /// Overrides the success `complete.message`.
    #[must_use]
    pub fn complete_message(mut self, message: impl Into<String>) -> Self {
        self.complete_message = message.into();
        self
    }

    /// Overrides the failure `complete.message`.
    #[must_use]
    pub fn failed_message(mut self, message: impl Into<String>) -> Self {
        self.guard = self.guard.failed_message(message);
        self
    }

    /// Runs `work` (see [`StreamGuard::run`]); its `Ok` value is the stage `result`
    /// (the reference sends `{"count": N}` for list results, the dict itself otherwise).
    pub fn run<F, Fut, R>(self, work: F) -> impl Stream<Item = Event> + Send + 'static
    where
        F: FnOnce(EventSink) -> Fut + Send + 'static,
        Fut: Future<Output = Result<R, Failure>> + Send + 'static,
        R: Into<Value>,
    {
        let Stage {
            step,
            started_message,
            finished_message,
            complete_message,
            guard,
        } = self;
        guard.run(move |sink| async move {
            sink.emit(Step::started_with(step.clone(), started_message));
            let result: Value = work(sink.clone()).await?.into();
            sink.emit(Step::completed_with(step, finished_message, result.clone()));
            Ok(Complete::success(complete_message, result))
        })
    }
}

/// `{"count": n}`, the reference's result for list-returning stages.
pub fn count_result(n: usize) -> Dict {
    Dict::new().with("count", n)
}

struct AbortOnDrop(JoinHandle<Result<Complete, Failure>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum RunState {
    Running {
        rx: mpsc::UnboundedReceiver<Event>,
        task: AbortOnDrop,
        guard: StreamGuard,
    },
    Tail(VecDeque<Event>),
}

impl RunState {
    async fn next(self) -> Option<(Event, RunState)> {
        match self {
            RunState::Running {
                mut rx,
                mut task,
                guard,
            } => {
                let outcome = tokio::select! {
                    biased;
                    event = rx.recv() => match event {
                        Some(event) => return Some((event, RunState::Running { rx, task, guard })),
                        None => (&mut task.0).await,
                    },
                    outcome = &mut task.0 => outcome,
                };
                // Frames queued before the task finished still precede the terminal ones.
                let mut tail = VecDeque::new();
                while let Ok(event) = rx.try_recv() {
                    tail.push_back(event);
                }
                let terminal = match outcome {
                    Ok(Ok(complete)) => guard.completion_events(complete),
                    Ok(Err(failure)) => guard.failure_events(failure),
                    Err(join) if join.is_cancelled() => guard.failure_events(Failure::cancelled()),
                    Err(_) => guard.failure_events(Failure::new(format!(
                        "{} stage task panicked",
                        guard.step
                    ))),
                };
                tail.extend(terminal);
                pop_tail(tail)
            }
            RunState::Tail(tail) => pop_tail(tail),
        }
    }
}

fn pop_tail(mut tail: VecDeque<Event>) -> Option<(Event, RunState)> {
    tail.pop_front().map(|e| (e, RunState::Tail(tail)))
}

struct WrapState {
    events: Option<Pin<Box<dyn Stream<Item = Event> + Send>>>,
    guard: StreamGuard,
    saw_error: bool,
    tail: VecDeque<Event>,
}

impl WrapState {
    async fn next(mut self) -> Option<(Event, WrapState)> {
        if let Some(event) = self.tail.pop_front() {
            return Some((event, self));
        }
        let events = self.events.as_mut()?;
        match events.next().await {
            Some(Event::Complete(complete)) => {
                self.events = None;
                if complete.ok || self.saw_error {
                    self.tail.push_back(Event::Complete(complete));
                } else {
                    self.tail.extend(self.guard.completion_events(complete));
                }
            }
            Some(event) => {
                self.saw_error |= event.name() == "error";
                return Some((event, self));
            }
            None => {
                self.events = None;
                let failure = Failure::new("Stream ended before the stage reported completion.");
                self.tail.extend(self.guard.failure_events(failure));
            }
        }
        let event = self.tail.pop_front()?;
        Some((event, self))
    }
}
