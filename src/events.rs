//! Event listeners shared by every component.
//!
//! Each component has its own event type (for example
//! [`CircuitBreakerEvent`](crate::circuit_breaker::CircuitBreakerEvent)); a [`Listener`] of that
//! type receives every event. Closures `Fn(&E)` are listeners. When no listener is registered
//! no event value is even built, so listeners cost nothing until they are used.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use tower_breaker::events::Listener;
//!
//! #[derive(Debug)]
//! struct Tick(u32);
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = seen.clone();
//! let listener = move |event: &Tick| sink.lock().unwrap().push(event.0);
//! listener.on_event(&Tick(7));
//! assert_eq!(*seen.lock().unwrap(), vec![7]);
//! ```

use std::fmt;
use std::sync::Arc;

/// Receives the events of one kind of component.
///
/// Called synchronously on the thread that caused the event, sometimes on the request path:
/// keep it short and never block. Hand slow work to a channel.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use tower_breaker::events::Listener;
///
/// #[derive(Default)]
/// struct Counter(AtomicUsize);
///
/// impl<E> Listener<E> for Counter {
///     fn on_event(&self, _event: &E) {
///         self.0.fetch_add(1, Ordering::Relaxed);
///     }
/// }
///
/// let counter = Counter::default();
/// counter.on_event(&"anything");
/// assert_eq!(counter.0.load(Ordering::Relaxed), 1);
/// ```
pub trait Listener<E>: Send + Sync + 'static {
    /// Called once per event.
    fn on_event(&self, event: &E);
}

impl<E, F> Listener<E> for F
where
    F: Fn(&E) + Send + Sync + 'static,
{
    fn on_event(&self, event: &E) {
        self(event)
    }
}

/// The listeners of one component: fixed when the component is built.
pub(crate) struct Listeners<E> {
    list: Vec<Arc<dyn Listener<E>>>,
}

impl<E: 'static> Listeners<E> {
    pub(crate) fn new() -> Self {
        Self { list: Vec::new() }
    }

    pub(crate) fn push(&mut self, listener: Arc<dyn Listener<E>>) {
        self.list.push(listener);
    }

    /// True when at least one listener is registered: check it before building an event.
    #[inline]
    pub(crate) fn is_active(&self) -> bool {
        !self.list.is_empty()
    }

    /// Builds the event only if someone listens, then hands it to each listener.
    ///
    /// While the thread unwinds (a guard or a permit dropped by a panic, perhaps a listener's
    /// own), each listener runs inside `catch_unwind`: a second panic escaping a destructor
    /// would abort the process.
    #[inline]
    pub(crate) fn emit(&self, make: impl FnOnce() -> E) {
        if self.is_active() {
            let event = make();
            let unwinding = std::thread::panicking();
            for listener in &self.list {
                if unwinding {
                    let call = std::panic::AssertUnwindSafe(|| listener.on_event(&event));
                    // Already panicking: this listener's panic is dropped, the first goes on.
                    let _ = std::panic::catch_unwind(call);
                } else {
                    listener.on_event(&event);
                }
            }
        }
    }
}

impl<E: 'static> Clone for Listeners<E> {
    fn clone(&self) -> Self {
        Self {
            list: self.list.clone(),
        }
    }
}

impl<E> fmt::Debug for Listeners<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listeners")
            .field("count", &self.list.len())
            .finish()
    }
}
