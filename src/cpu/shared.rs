//! An output buffer shared by the tasks of a parallel loop that write disjoint, interleaved
//! parts of it (tiles of a matrix, row ranges of every channel), which safe slice splitting
//! cannot express.

use std::cell::Cell;
use std::marker::PhantomData;
use std::thread::LocalKey;

/// A mutable buffer shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut<'a> {
    ptr: *mut f32,
    len: usize,
    _buffer: PhantomData<&'a mut [f32]>,
}

// SAFETY: the buffer is only written through `slice` and `at`, whose callers guarantee that
// no two tasks touch the same floats; it outlives the loop (the lifetime `'a`).
unsafe impl Send for SharedOut<'_> {}
unsafe impl Sync for SharedOut<'_> {}

impl<'a> SharedOut<'a> {
    /// Shares `out` (exclusively borrowed while shared).
    pub(crate) fn new(out: &'a mut [f32]) -> SharedOut<'a> {
        SharedOut {
            ptr: out.as_mut_ptr(),
            len: out.len(),
            _buffer: PhantomData,
        }
    }

    /// A pointer to float `start`, with `span` floats from there inside the buffer (checked).
    pub(crate) fn at(&self, start: usize, span: usize) -> *mut f32 {
        assert!(start <= self.len && span <= self.len - start);
        self.ptr.wrapping_add(start)
    }

    /// Floats `start..start + len` (bounds checked).
    ///
    /// # Safety
    /// While the slice lives, no other task may access these floats.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, start: usize, len: usize) -> &'a mut [f32] {
        // SAFETY: inside the buffer (checked by `at`); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.at(start, len), len) }
    }
}

/// Runs `f` on a buffer of `len` floats kept in the thread-local `key` between calls, so that
/// hot loops neither allocate nor zero a buffer each time: its contents are whatever the last
/// use left (zeros only where it grew), so `f` must write every float before reading it. A
/// call nested in another's (a task stolen while the first waits) finds the buffer taken and
/// makes its own.
pub(crate) fn with_reused<R>(
    key: &'static LocalKey<Cell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let mut buf = key.take();
    buf.resize(len, 0.0);
    let r = f(&mut buf);
    key.set(buf);
    r
}
