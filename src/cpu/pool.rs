//! Reuse of activation buffers across the ops of a run and across runs, so that in steady
//! state a run neither allocates nor has the OS zero fresh pages for its activations.

use std::sync::Mutex;

/// Free f32 buffers kept by a backend between runs: one set per run that was under way at
/// the same time as others (threads running parts of a batch, or concurrent callers).
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    sets: Mutex<Vec<Vec<Vec<f32>>>>,
}

impl BufferPool {
    /// Takes a set of buffers for one run; it comes back when the returned value drops.
    pub(crate) fn begin(&self) -> Buffers<'_> {
        let free = self.lock().pop().unwrap_or_default();
        Buffers { pool: self, free }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<Vec<f32>>>> {
        self.sets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The free buffers of one run.
#[derive(Debug)]
pub(crate) struct Buffers<'a> {
    pool: &'a BufferPool,
    free: Vec<Vec<f32>>,
}

impl Buffers<'_> {
    /// A buffer of `len` floats whose content is unspecified (stale values or zeros): for
    /// outputs that are written in full. Picks the free buffer that needs the least work:
    /// the shortest one already long enough, else the one with the largest capacity.
    pub(crate) fn take(&mut self, len: usize) -> Vec<f32> {
        let long_enough = (0..self.free.len())
            .filter(|&i| self.free[i].len() >= len)
            .min_by_key(|&i| self.free[i].len());
        let pick =
            long_enough.or_else(|| (0..self.free.len()).max_by_key(|&i| self.free[i].capacity()));
        let mut buf = pick.map(|i| self.free.swap_remove(i)).unwrap_or_default();
        if buf.len() >= len {
            buf.truncate(len);
        } else {
            buf.resize(len, 0.0);
        }
        buf
    }

    /// Returns a buffer for later ops (and runs).
    pub(crate) fn give(&mut self, buf: Vec<f32>) {
        if buf.capacity() > 0 {
            self.free.push(buf);
        }
    }
}

impl Drop for Buffers<'_> {
    fn drop(&mut self) {
        let free = std::mem::take(&mut self.free);
        self.pool.lock().push(free);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_with_the_asked_length() {
        let pool = BufferPool::default();
        {
            let mut b = pool.begin();
            let x = b.take(100);
            assert_eq!(x.len(), 100);
            b.give(x);
            let y = b.take(40);
            assert_eq!(y.len(), 40);
            assert!(y.capacity() >= 100, "reused");
            b.give(y);
        }
        let mut b = pool.begin();
        let z = b.take(70);
        assert_eq!(z.len(), 70);
        assert!(z.capacity() >= 100, "kept across runs");
        let mut other = pool.begin();
        assert!(
            other.take(10).capacity() < 100,
            "a concurrent run gets its own set"
        );
        other.give(vec![0.0; 10]);
        drop(other);
        b.give(z);
        drop(b);
        assert_eq!(pool.lock().len(), 2, "both sets kept");
    }
}
