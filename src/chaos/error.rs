use std::fmt;
use std::sync::Arc;

/// A failure injected by a [`ChaosLayer`](super::ChaosLayer): the error of a
/// [`Fault::Error`](super::Fault::Error), or the body error of a stream cut with `reset`.
/// Test for it with `err.is::<ChaosError>()`.
#[derive(Debug, Clone)]
pub struct ChaosError {
    name: Arc<str>,
    message: Arc<str>,
}

impl ChaosError {
    pub(crate) fn new(name: Arc<str>, message: Arc<str>) -> Self {
        Self { name, message }
    }

    /// The name of the layer that injected it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fault's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ChaosError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (injected by chaos `{}`)", self.message, self.name)
    }
}

impl std::error::Error for ChaosError {}
