//! A value read from files and read again when they change on disk: the gateway's certificate
//! and its token file are renewed or edited while it runs, and picked up without a restart or a
//! signal. A reader looks at the files' modification times, at most once a second; a change
//! that does not load (a file caught half-written) is logged and the value it had is kept, to
//! be tried again at the next look.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often the files are looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);

type Load<T> = Box<dyn Fn() -> Result<T, String> + Send + Sync>;

/// A value kept in step with its files.
pub struct Watched<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    load: Load<T>,
    seen: Mutex<Seen<T>>,
}

struct Seen<T> {
    value: Arc<T>,
    stamps: Vec<Option<SystemTime>>,
    looked: Instant,
}

fn stamps(paths: &[PathBuf]) -> Vec<Option<SystemTime>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

impl<T> Watched<T> {
    /// `first`, just loaded from `paths`; `load` reads them again. `what` names it in logs.
    pub fn new(
        what: &'static str,
        paths: Vec<PathBuf>,
        first: T,
        load: impl Fn() -> Result<T, String> + Send + Sync + 'static,
    ) -> Watched<T> {
        let seen = Seen {
            value: Arc::new(first),
            stamps: stamps(&paths),
            looked: Instant::now(),
        };
        Watched {
            what,
            paths,
            load: Box::new(load),
            seen: Mutex::new(seen),
        }
    }

    /// The value, read again first if its files have changed since the last look.
    pub fn current(&self) -> Arc<T> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.looked.elapsed() >= LOOK_EVERY {
            seen.looked = Instant::now();
            // Taken before the read: a change made during it is seen at the next look.
            let now = stamps(&self.paths);
            if now != seen.stamps {
                match (self.load)() {
                    Ok(value) => {
                        seen.value = Arc::new(value);
                        seen.stamps = now;
                        tracing::info!(what = self.what, "reloaded: its file changed");
                    }
                    Err(error) => tracing::warn!(
                        what = self.what,
                        %error,
                        "its file changed but does not load; keeping what was loaded before"
                    ),
                }
            }
        }
        Arc::clone(&seen.value)
    }
}

impl<T> std::fmt::Debug for Watched<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("what", &self.what)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}
