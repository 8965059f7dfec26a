//! Jobs written once. A job whose submitter waits for it inline, and shows its
//! id to nobody before then, needs no write when it is accepted: its terminal
//! write is its first, and it follows the answer instead of preceding it
//! (logged only, `terminal.rs`: the answer carries everything it holds; the
//! fsync follows within a second). If the submitter stops waiting before the
//! end, the job is written and fsync'd as it stands before its id goes out
//! ([`make_durable`]). A stream's job is written so while its backend works on
//! the first chunk, which waits for that write: the write is off the time to
//! first token. A crash before either loses the job together with the
//! connection waiting for it, which never learned its id; nothing was charged
//! or promised for it.
//!
//! Whichever write comes first holds the job; a later one must land after it,
//! so the choice and the hand-off to the store's queue happen under one lock.

use crate::flag::Flag;
use crate::live::LiveJob;
use crate::scheduler::Inner;
use gpubridge_store::{Durability, StoreError, WriteSet};
use parking_lot::Mutex;

/// The acceptance of a job started before it was written.
pub(crate) struct Unwritten {
    /// Nothing holding the job has been queued for the store yet.
    pending: Mutex<bool>,
    /// A write holding the job is durable.
    durable: Flag,
}

impl Unwritten {
    pub fn new() -> Unwritten {
        Unwritten {
            pending: Mutex::new(true),
            durable: Flag::default(),
        }
    }

    /// The job's terminal write is about to be queued: nothing else writes it.
    /// Any write queued before this returns lands before that one. How durable
    /// that write must be: if nothing showed the job's id yet, only its
    /// submitter learns of it, from the answer itself, so logging it after the
    /// answer is enough; a job a waiter made durable is fsync'd to the end.
    pub fn ending(&self) -> Durability {
        match std::mem::replace(&mut *self.pending.lock(), false) {
            true => Durability::Logged,
            false => Durability::Synced,
        }
    }

    /// A write holding the job (its terminal one) is durable.
    pub fn written(&self) {
        self.durable.set();
    }
}

/// Makes the job durable as it stands, unless it is already or has ended: for
/// a waiter about to show the job's id, which reads the job again after this
/// (an ended job is answered whole). Jobs accepted the usual way are durable
/// before their submitter learns their id (`acceptance.rs`).
pub(crate) async fn make_durable(inner: &Inner, live: &LiveJob) -> Result<(), StoreError> {
    let Some(unwritten) = live.unwritten.as_deref() else {
        return Ok(());
    };
    if unwritten.durable.is_set() {
        return Ok(());
    }
    // Room in the store's queue first: the lock below is never held across an await.
    let slot = inner.store.slot().await?;
    let ack = {
        let mut pending = unwritten.pending.lock();
        std::mem::replace(&mut *pending, false).then(|| {
            let mut writes = WriteSet::new();
            crate::jobs::write_new(&mut writes, &live.record.lock());
            slot.submit(writes)
        })
    };
    if let Some(ack) = ack {
        ack.await?;
        unwritten.written();
        return Ok(());
    }
    // Another write holds it (another waiter's), or its end is on its way:
    // once ended, the waiter answers with the end itself, which shows all the
    // job holds, so the end's write need not be waited for.
    tokio::select! {
        _ = unwritten.durable.wait() => {}
        _ = live.done.wait() => {}
    }
    Ok(())
}
