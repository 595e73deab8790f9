//! Getting results off the GPU without blocking: logits (or any buffer) copied into a
//! `MAP_READ` staging buffer and mapped through a future.
//!
//! The futures here never block and use no executor of their own, so they work the same on
//! native and on wasm/WebGPU. **On native, wgpu delivers a mapping only from
//! [`wgpu::Device::poll`]**: something must poll the device while a future waits. Each time one
//! of these futures is polled it calls `device.poll(PollType::Poll)` once itself (non-blocking),
//! so an application that polls its futures every frame needs nothing else; an executor that
//! sleeps until woken needs the device polled elsewhere (`device.poll(PollType::Poll)` in the
//! event loop, or `PollType::wait_indefinitely()` on a worker thread). On the web the browser
//! does it. The `*_blocking` wrappers wait for the device themselves (they use `pollster`, and
//! are for native code and tests).
//!
//! Two ways to read logits:
//!
//! - [`LogitsReadback`]: the host records the copy into its own encoder right after
//!   [`GpuRunner::encode`], submits when it likes, then awaits [`LogitsReadback::read`]:
//!   inference, copy and readback ride in the host's one submission.
//! - [`read_logits`]: one call, after the host has submitted its inference; it submits the copy
//!   itself (a queue orders it after everything submitted before).
//!
//! ```no_run
//! use regnet_wgpu::gpu::readback::LogitsReadback;
//! # fn demo(runner: &regnet_wgpu::gpu::GpuRunner, device: &wgpu::Device, queue: &wgpu::Queue)
//! #     -> regnet_wgpu::Result<()> {
//! let readback = LogitsReadback::new(runner);
//! let mut encoder = device.create_command_encoder(&Default::default());
//! runner.encode(&mut encoder); // reads runner.input_buffer(), writes runner.logits_buffer()
//! readback.encode_copy(&mut encoder);
//! queue.submit([encoder.finish()]);
//! let logits = readback.read_blocking()?; // or `readback.read().await` in async code
//! println!("top-5: {:?}", logits.top_k(0, 5));
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::{GpuContext, GpuRunner};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

#[derive(Default)]
struct MapState {
    result: Option<std::result::Result<(), wgpu::BufferAsyncError>>,
    waker: Option<Waker>,
}

/// A `Buffer::map_async` as a future: ready once wgpu calls back. Polling it polls the device
/// once (non-blocking), see the [module docs](self).
struct MapFuture {
    device: wgpu::Device,
    state: Arc<Mutex<MapState>>,
}

impl MapFuture {
    /// Starts mapping the whole of `buffer` for reading.
    fn read(device: &wgpu::Device, buffer: &wgpu::Buffer) -> Self {
        let state = Arc::new(Mutex::new(MapState::default()));
        let cb_state = state.clone();
        buffer.map_async(wgpu::MapMode::Read, .., move |r| {
            let mut s = cb_state.lock().unwrap_or_else(|e| e.into_inner());
            s.result = Some(r);
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        });
        MapFuture {
            device: device.clone(),
            state,
        }
    }

    fn take(
        &self,
        cx: &mut Context<'_>,
    ) -> Option<std::result::Result<(), wgpu::BufferAsyncError>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match s.result.take() {
            Some(r) => Some(r),
            None => {
                s.waker = Some(cx.waker().clone());
                None
            }
        }
    }
}

impl Future for MapFuture {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let done = |r: std::result::Result<(), wgpu::BufferAsyncError>| {
            Poll::Ready(r.map_err(|e| Error::Gpu(format!("mapping a readback buffer failed: {e}"))))
        };
        if let Some(r) = self.take(cx) {
            return done(r);
        }
        // Native wgpu runs map callbacks from `Device::poll`; a no-op on WebGPU.
        // The waker is stored first, so a callback fired here wakes this task.
        if let Err(e) = self.device.poll(wgpu::PollType::Poll) {
            return Poll::Ready(Err(Error::Gpu(format!("polling the device failed: {e}"))));
        }
        match self.take(cx) {
            Some(r) => done(r),
            None => Poll::Pending,
        }
    }
}

/// Waits for all submitted work on the device (native; a no-op on WebGPU).
fn wait(device: &wgpu::Device) -> Result<()> {
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map(|_| ())
        .map_err(|e| Error::Gpu(format!("waiting for the device failed: {e}")))
}

/// Copies a mapped buffer out and unmaps it.
fn take_mapped(buffer: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
    let view = buffer
        .get_mapped_range(..)
        .map_err(|e| Error::Gpu(format!("reading a mapped buffer failed: {e}")))?;
    let out = view[..size as usize].to_vec();
    drop(view);
    buffer.unmap();
    Ok(out)
}

fn align4(n: u64) -> u64 {
    n.div_ceil(4).max(1) * 4
}

/// A `MAP_READ | COPY_DST` buffer of `size` bytes rounded up to 4.
pub(crate) fn staging(device: &wgpu::Device, label: &str, size: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: align4(size),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Polls a future once with a no-op waker: its output when it is ready at once (error-scope
/// pops on native wgpu are), `None` otherwise.
pub(crate) fn ready_now<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// A reusable staging buffer for a runner's logits: [`encode_copy`](Self::encode_copy) into
/// the host's encoder after [`GpuRunner::encode`], submit, then [`read`](Self::read).
///
/// One read at a time per `LogitsReadback` (a buffer maps once); make one per frame in
/// flight to overlap them. It is `Send + Sync`.
#[derive(Debug)]
pub struct LogitsReadback {
    device: wgpu::Device,
    source: wgpu::Buffer,
    status: wgpu::Buffer,
    decoder: super::runner::StatusDecoder,
    staging: wgpu::Buffer,
    shape: [usize; 2],
}

impl LogitsReadback {
    /// A staging buffer sized for `runner`'s logits (`[N, classes]` f32) and its status word.
    pub fn new(runner: &GpuRunner) -> Self {
        let shape = [runner.input_shape()[0], runner.classes()];
        let bytes = (shape[0] * shape[1] * 4) as u64;
        LogitsReadback {
            device: runner.context().device.clone(),
            source: runner.logits_buffer().clone(),
            status: runner.status_buffer().clone(),
            decoder: runner.status_decoder(),
            staging: staging(&runner.context().device, "logits readback", bytes + 4),
            shape,
        }
    }

    /// Shape of the logits read: `[N, classes]`.
    pub fn shape(&self) -> [usize; 2] {
        self.shape
    }

    /// The `MAP_READ | COPY_DST` buffer the logits are copied into (then the status word).
    pub fn staging_buffer(&self) -> &wgpu::Buffer {
        &self.staging
    }

    /// Records the copy of the runner's logits into the staging buffer. Record it after
    /// [`GpuRunner::encode`] (same encoder, or any later submission).
    pub fn encode_copy(&self, encoder: &mut wgpu::CommandEncoder) {
        let bytes = (self.shape[0] * self.shape[1] * 4) as u64;
        encoder.copy_buffer_to_buffer(&self.source, 0, &self.staging, 0, bytes);
        encoder.copy_buffer_to_buffer(&self.status, 0, &self.staging, bytes, 4);
    }

    /// The logits, once the submission holding [`encode_copy`](Self::encode_copy) has run; an
    /// [`Error::PrecisionOverflow`] naming the op when the inference met a value its precision
    /// cannot hold (the logits would be wrong).
    /// Await it after submitting; see the [module docs](self) for who polls the device.
    pub async fn read(&self) -> Result<Tensor> {
        MapFuture::read(&self.device, &self.staging).await?;
        self.finish()
    }

    /// Blocking [`read`](Self::read): waits for the device (native only).
    pub fn read_blocking(&self) -> Result<Tensor> {
        let map = MapFuture::read(&self.device, &self.staging);
        wait(&self.device)?;
        pollster::block_on(map)?;
        self.finish()
    }

    fn finish(&self) -> Result<Tensor> {
        let n = self.shape[0] * self.shape[1];
        let bytes = take_mapped(&self.staging, (n * 4 + 4) as u64)?;
        let status = u32::from_le_bytes([
            bytes[4 * n],
            bytes[4 * n + 1],
            bytes[4 * n + 2],
            bytes[4 * n + 3],
        ]);
        self.decoder.check(status)?;
        Tensor::new(
            self.shape.to_vec(),
            bytemuck::pod_collect_to_vec(&bytes[..4 * n]),
        )
    }
}

/// The logits of the last inference submitted on `runner`, `[N, classes]`: copies
/// [`GpuRunner::logits_buffer`] into a fresh staging buffer in a submission of its own (ordered
/// after everything already submitted to the queue), then awaits the mapping. Never blocks;
/// see the [module docs](self) for who polls the device on native.
pub async fn read_logits(runner: &GpuRunner) -> Result<Tensor> {
    let readback = LogitsReadback::new(runner);
    submit_copy(runner.context(), &readback);
    readback.read().await
}

/// Blocking [`read_logits`] (native only): waits for the device.
pub fn read_logits_blocking(runner: &GpuRunner) -> Result<Tensor> {
    let readback = LogitsReadback::new(runner);
    submit_copy(runner.context(), &readback);
    readback.read_blocking()
}

fn submit_copy(ctx: &GpuContext, readback: &LogitsReadback) {
    let mut enc = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("logits readback"),
        });
    readback.encode_copy(&mut enc);
    ctx.queue.submit([enc.finish()]);
}

/// `size` bytes of `buffer` from `offset` (both multiples of 4; `buffer` needs `COPY_SRC`),
/// copied in a submission of its own and mapped without blocking: e.g. a preprocessed input
/// to look at. See the [module docs](self) for who polls the device on native.
pub async fn read_buffer(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    offset: u64,
    size: u64,
) -> Result<Vec<u8>> {
    let stage = submit_buffer_copy(ctx, buffer, offset, size)?;
    MapFuture::read(&ctx.device, &stage).await?;
    take_mapped(&stage, size)
}

/// Blocking [`read_buffer`] (native only): waits for the device.
pub fn read_buffer_blocking(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    offset: u64,
    size: u64,
) -> Result<Vec<u8>> {
    let stage = submit_buffer_copy(ctx, buffer, offset, size)?;
    let map = MapFuture::read(&ctx.device, &stage);
    wait(&ctx.device)?;
    pollster::block_on(map)?;
    take_mapped(&stage, size)
}

fn submit_buffer_copy(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    offset: u64,
    size: u64,
) -> Result<wgpu::Buffer> {
    if !offset.is_multiple_of(4) || !size.is_multiple_of(4) || size == 0 {
        return Err(Error::Input(format!(
            "buffer reads need a non-zero size and an offset that are multiples of 4; got offset {offset}, size {size}"
        )));
    }
    if offset + size > buffer.size() {
        return Err(Error::Input(format!(
            "reading {size} bytes at {offset} from a buffer of {} bytes",
            buffer.size()
        )));
    }
    if !buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
        return Err(Error::Input(
            "the buffer to read lacks the COPY_SRC usage".into(),
        ));
    }
    let stage = staging(&ctx.device, "buffer readback", size);
    let mut enc = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("buffer readback"),
        });
    enc.copy_buffer_to_buffer(buffer, offset, &stage, 0, size);
    ctx.queue.submit([enc.finish()]);
    Ok(stage)
}
