//! Each account's jobs, newest first. Jobs are numbered per account as they are
//! accepted, and indexed under `account ‖ (u64::MAX − number)`: the job at any
//! offset is one seek away, however deep the page. A job whose write failed
//! leaves its number unused, so offsets can skip one such gap.

use crate::tables::ACCOUNT_JOBS;
use gpubridge_protocol::{AccountId, JobId};
use gpubridge_store::{ReadMode, Store, StoreError, View, WriteSet};
use std::collections::BTreeMap;
use std::ops::ControlFlow;

const KEY_LEN: usize = 16 + 8;

fn key_of(account: AccountId, number: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(KEY_LEN);
    key.extend_from_slice(&account.0);
    key.extend_from_slice(&(u64::MAX - number).to_be_bytes());
    key
}

fn number_of(key: &[u8]) -> Option<u64> {
    let inverted: [u8; 8] = key.get(16..KEY_LEN)?.try_into().ok()?;
    (key.len() == KEY_LEN).then(|| u64::MAX - u64::from_be_bytes(inverted))
}

/// Indexes job `number` of `account`.
pub(crate) fn write(writes: &mut WriteSet, account: AccountId, number: u64, job: &JobId) {
    writes.put(ACCOUNT_JOBS, key_of(account, number), job.as_bytes());
}

/// The number the account's next job gets: one past its newest.
pub(crate) fn next_number(view: &dyn View, account: AccountId) -> Result<u64, StoreError> {
    let mut next = 0;
    view.scan(ACCOUNT_JOBS, &account.0, None, &mut |key, _| {
        next = number_of(key).map_or(0, |n| n + 1);
        ControlFlow::Break(())
    })?;
    Ok(next)
}

/// Where a page starts: so many jobs from the newest, or at a cursor from an earlier page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageStart {
    Offset(u64),
    Cursor(u64),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryPage {
    pub job_ids: Vec<JobId>,
    /// Pass back as the cursor for the following page; `None` at the end.
    pub next_cursor: Option<u64>,
}

/// Up to `limit` of `account`'s jobs, newest first, from `start`. `count` is
/// how many numbers the account has used.
pub(crate) async fn page(
    store: &Store,
    account: AccountId,
    count: u64,
    start: PageStart,
    limit: usize,
) -> Result<HistoryPage, StoreError> {
    let newest = match start {
        PageStart::Offset(offset) if offset < count => count - 1 - offset,
        PageStart::Cursor(number) if number < count => number,
        _ => return Ok(HistoryPage::default()),
    };
    let found = store
        .page(
            ACCOUNT_JOBS,
            account.0.to_vec(),
            Some(key_of(account, newest)),
            limit,
        )
        .await?;
    Ok(HistoryPage {
        job_ids: found
            .items
            .iter()
            .filter_map(|(_, value)| std::str::from_utf8(value).ok().and_then(JobId::parse))
            .collect(),
        next_cursor: found.next.as_deref().and_then(number_of),
    })
}

impl crate::accounts::Accounts {
    /// A page of the account's jobs, newest first.
    pub async fn history(
        &self,
        account: AccountId,
        start: PageStart,
        limit: usize,
    ) -> Result<HistoryPage, crate::accounts::AccountError> {
        let count = self.state(account)?.lock().jobs;
        Ok(page(&self.store, account, count, start, limit).await?)
    }
}

/// Layout 1 history keys (`account ‖ inverted time ‖ job id`, newest first)
/// become numbered ones, one account per commit: an account is wholly
/// converted or not at all, so running it again finishes the rest.
pub async fn upgrade_layout_1(store: &Store) -> Result<(), StoreError> {
    const OLD_KEY: usize = 16 + 8;
    let by_account = store
        .read(ReadMode::Latest, |view| {
            let mut by_account: BTreeMap<[u8; 16], Vec<Vec<u8>>> = BTreeMap::new();
            view.scan(ACCOUNT_JOBS, &[], None, &mut |key, _| {
                if let (true, Ok(account)) = (key.len() > OLD_KEY, key[..16].try_into()) {
                    by_account.entry(account).or_default().push(key.to_vec());
                }
                ControlFlow::Continue(())
            })?;
            Ok(by_account)
        })
        .await?;
    for (account, keys) in by_account {
        let count = keys.len() as u64;
        let mut writes = WriteSet::new();
        for (index, key) in keys.into_iter().enumerate() {
            let job = key[OLD_KEY..].to_vec();
            writes.delete(ACCOUNT_JOBS, key);
            writes.put(
                ACCOUNT_JOBS,
                key_of(AccountId(account), count - 1 - index as u64),
                job,
            );
        }
        store.commit(writes).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_by_offset_and_cursor_newest_first() {
        let store = Store::memory(&[ACCOUNT_JOBS]);
        let (me, other) = (AccountId([1; 16]), AccountId([2; 16]));
        let ids: Vec<JobId> = (0..25).map(|_| JobId::random()).collect();
        let mut writes = WriteSet::new();
        for (n, id) in ids.iter().enumerate() {
            write(&mut writes, me, n as u64, id);
        }
        write(&mut writes, other, 0, &JobId::random());
        store.commit(writes).await.unwrap();
        let count = store
            .read(gpubridge_store::ReadMode::Latest, move |view| {
                next_number(view, me)
            })
            .await
            .unwrap();
        assert_eq!(count, 25);

        let first = page(&store, me, count, PageStart::Offset(0), 10)
            .await
            .unwrap();
        assert_eq!(first.job_ids[0], ids[24], "newest first");
        assert_eq!(first.next_cursor, Some(14));
        let second = page(&store, me, count, PageStart::Cursor(14), 10)
            .await
            .unwrap();
        let by_offset = page(&store, me, count, PageStart::Offset(10), 10)
            .await
            .unwrap();
        assert_eq!(second, by_offset);
        let last = page(&store, me, count, PageStart::Offset(20), 10)
            .await
            .unwrap();
        assert_eq!(
            last.job_ids,
            ids[..5].iter().rev().cloned().collect::<Vec<_>>()
        );
        assert_eq!(
            last.next_cursor, None,
            "another account's jobs are not this one's"
        );
        assert!(page(&store, me, count, PageStart::Offset(25), 10)
            .await
            .unwrap()
            .job_ids
            .is_empty());
    }
}
