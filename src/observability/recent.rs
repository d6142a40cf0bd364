//! Each thread's short list of the series it used last, found by the identity of the name
//! (`Arc::ptr_eq`) without a lock; the map behind it is taken only on a miss.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// Series a thread remembers (a few components per thread is the common case; more still
/// work, through the map).
const RECENT: usize = 8;

/// Which kind of component a remembered series is for (a breaker and a bulkhead may share
/// a name).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Component {
    Breaker,
    Bulkhead,
}

/// The series this thread used last, each with the name (an `Arc` clone, so that its address
/// stays this name's while it is remembered) and the core it came from.
struct Recent {
    entries: Vec<Remembered>,
    next: usize,
}

struct Remembered {
    core: u64,
    component: Component,
    name: Arc<str>,
    series: Arc<dyn Any + Send + Sync>,
}

std::thread_local! {
    static THREAD_RECENT: RefCell<Recent> = const {
        RefCell::new(Recent { entries: Vec::new(), next: 0 })
    };
}

impl Recent {
    fn find(
        &self,
        core: u64,
        component: Component,
        name: &Arc<str>,
    ) -> Option<&Arc<dyn Any + Send + Sync>> {
        self.entries
            .iter()
            .find(|r| r.core == core && r.component == component && Arc::ptr_eq(&r.name, name))
            .map(|r| &r.series)
    }

    fn remember(&mut self, entry: Remembered) {
        if self.entries.len() < RECENT {
            if self.entries.capacity() == 0 {
                self.entries.reserve_exact(RECENT);
            }
            self.entries.push(entry);
        } else {
            self.next = (self.next + 1) % RECENT;
            self.entries[self.next] = entry;
        }
    }
}

/// Runs `f` on `name`'s entry of `map`, made by `make` on first use. The common case is this
/// thread's [`Recent`] list: no lock, no hash. Otherwise a read lock and a hash (a write lock
/// for a new name), and the entry is remembered.
pub(super) fn with_entry<S: Send + Sync + 'static, R>(
    core: u64,
    component: Component,
    map: &RwLock<HashMap<Arc<str>, Arc<S>>>,
    name: &Arc<str>,
    make: impl FnOnce() -> S,
    f: impl Fn(&S) -> R,
) -> R {
    // `try_`: a thread whose locals are gone (an event from a thread-local's destructor), or
    // an event raised while this thread's list is being changed, takes the map's path.
    let hit = THREAD_RECENT.try_with(|recent| {
        let recent = recent.try_borrow().ok()?;
        let series = recent.find(core, component, name)?.downcast_ref::<S>()?;
        Some(f(series))
    });
    if let Ok(Some(result)) = hit {
        return result;
    }
    let series = {
        let read = map.read().unwrap_or_else(PoisonError::into_inner);
        read.get(&**name).cloned()
    };
    let series = series.unwrap_or_else(|| {
        let mut write = map.write().unwrap_or_else(PoisonError::into_inner);
        write
            .entry(name.clone())
            .or_insert_with(|| Arc::new(make()))
            .clone()
    });
    let _ = THREAD_RECENT.try_with(|recent| {
        if let Ok(mut recent) = recent.try_borrow_mut() {
            recent.remember(Remembered {
                core,
                component,
                name: name.clone(),
                series: series.clone(),
            });
        }
    });
    f(&series)
}
