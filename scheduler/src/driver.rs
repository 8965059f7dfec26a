//! A job run by the request that waits for it. Its runner is polled in that
//! request's own task rather than a task of its own: one spawn and one
//! cross-task wake-up fewer per inline answer, and the request, its job and the
//! upstream call stay on one worker. A driver dropped before its job ends (the
//! wait ran out, or the client left) hands the job to a task of its own, so an
//! accepted job always runs to its end.

use crate::job::JobRecord;
use crate::live::LiveJob;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A job's whole run: attempts, failover and its terminal write.
pub(crate) type JobRun = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A started job nobody has polled yet; see the module docs.
#[must_use = "a job runs only while its driver is polled, or once it is dropped"]
pub struct Driver {
    live: Arc<LiveJob>,
    run: Option<JobRun>,
}

impl Driver {
    pub(crate) fn new(live: Arc<LiveJob>, run: JobRun) -> Driver {
        Driver {
            live,
            run: Some(run),
        }
    }

    /// Runs the job in a task of its own from now on: for a door that answers
    /// while the job goes on (a stream).
    pub fn detach(self) {
        drop(self);
    }

    /// Runs the job for up to `wait`: its terminal record if it ended, which
    /// the caller takes (it is not held for status reads); `None` if it goes
    /// on in a task of its own.
    pub async fn run_for(mut self, wait: Duration) -> Option<Arc<JobRecord>> {
        let run = self.run.as_mut()?;
        // Counted as waiting, so the end is handed over rather than cached.
        let waiting = self.live.waiting();
        let ended = tokio::time::timeout(wait, run).await.is_ok();
        drop(waiting);
        if !ended {
            return None;
        }
        self.run = None;
        let record = self.live.record.lock().clone();
        record.status.is_terminal().then_some(record)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let Some(run) = self.run.take() else {
            return;
        };
        // Drivers are made inside the daemon's runtime; outside one (a test
        // without a runtime) the job ends unrun, as any task would at shutdown.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(run);
        }
    }
}
