//! `BoundedQueue`: the per-subscriber queue behind subscriptions and event streams.
//!
//! Pushing never blocks (the network task must never wait for a slow reader): on overflow the
//! oldest item is dropped and counted. Readers pull batches, waiting if the queue is empty.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

struct State<T> {
    items: VecDeque<T>,
    dropped: u64,
    closed: bool,
}

/// A bounded, drop-oldest, many-writer queue with async batch reads.
pub struct BoundedQueue<T> {
    capacity: usize,
    state: Mutex<State<T>>,
    readable: Notify,
}

impl<T> BoundedQueue<T> {
    /// An empty queue holding at most `capacity` (≥ 1) items.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(State {
                items: VecDeque::new(),
                dropped: 0,
                closed: false,
            }),
            readable: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `items`, dropping the oldest on overflow. Returns false if the queue is closed.
    pub fn push_all(&self, items: impl IntoIterator<Item = T>) -> bool {
        {
            let mut state = self.lock();
            if state.closed {
                return false;
            }
            for item in items {
                if state.items.len() == self.capacity {
                    state.items.pop_front();
                    state.dropped += 1;
                }
                state.items.push_back(item);
            }
        }
        self.readable.notify_waiters();
        true
    }

    /// Takes up to `max` items without waiting. `None` once closed and drained.
    pub fn try_pop(&self, max: usize) -> Option<Vec<T>> {
        let mut state = self.lock();
        if state.items.is_empty() && state.closed {
            return None;
        }
        let n = state.items.len().min(max.max(1));
        Some(state.items.drain(..n).collect())
    }

    /// Takes up to `max` items, waiting for at least one. `None` once closed and drained.
    pub async fn pop(&self, max: usize) -> Option<Vec<T>> {
        loop {
            let notified = self.readable.notified();
            tokio::pin!(notified);
            // Register before checking, so a push between the check and the await still wakes us.
            notified.as_mut().enable();
            match self.try_pop(max) {
                Some(batch) if batch.is_empty() => notified.await,
                other => return other,
            }
        }
    }

    /// Closes the queue: pushes are refused, readers drain what is left and then get `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.readable.notify_waiters();
    }

    /// Whether [`BoundedQueue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// How many items were dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_drops_the_oldest_and_counts() {
        let queue = BoundedQueue::new(3);
        queue.push_all(0..5);
        assert_eq!(queue.dropped(), 2);
        assert_eq!(queue.try_pop(10), Some(vec![2, 3, 4]));
        assert_eq!(queue.try_pop(10), Some(vec![]));
    }

    #[tokio::test]
    async fn pop_waits_then_close_ends() {
        let queue = std::sync::Arc::new(BoundedQueue::new(8));
        let reader = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.pop(2).await })
        };
        tokio::task::yield_now().await;
        queue.push_all([1, 2, 3]);
        assert_eq!(reader.await.unwrap(), Some(vec![1, 2]));
        queue.close();
        assert!(!queue.push_all([9]));
        assert_eq!(queue.pop(8).await, Some(vec![3]));
        assert_eq!(queue.pop(8).await, None);
    }
}
