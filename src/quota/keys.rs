//! The list of a governor's keys, for reports that cover every key (the dashboard).

use super::Quota;
use std::fmt;
use std::hash::Hash;

impl<K: Hash + Eq + Clone + fmt::Display + Send + 'static> Quota<K> {
    /// Every key kept now, in no particular order (one short hold of the governor's lock to
    /// copy them). Read each key's budgets with [`snapshot`](Self::snapshot).
    ///
    /// ```
    /// use tower_breaker::quota::Quota;
    ///
    /// let quota = Quota::<String>::builder("openai").build()?;
    /// quota.set_limits(&"gpt".to_string(), Some(60), None);
    /// assert_eq!(quota.keys(), vec!["gpt".to_string()]);
    /// # Ok::<_, tower_breaker::ConfigError>(())
    /// ```
    pub fn keys(&self) -> Vec<K> {
        self.shared.lock().keys().cloned().collect()
    }
}
