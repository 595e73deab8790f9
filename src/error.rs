//! One error type for the whole library. Every variant names what is wrong:
//! the parameter, the tensor, the file or the limit.

use std::path::PathBuf;

/// Everything that can go wrong in regnet-wgpu.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model parameter is out of its valid range.
    #[error("invalid model parameter `{param}`: {reason}")]
    InvalidParam {
        /// The parameter's name as the spec writes it (`depth`, `w0`, ...).
        param: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A `--regnet` or `--anynet` spec string could not be parsed.
    #[error("invalid model spec: {0}")]
    Spec(String),
    /// A model name that is not in the zoo.
    #[error("unknown model `{name}`; known models: {known}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The zoo's names, comma separated.
        known: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A safetensors file is malformed (truncated, garbage, absurd header).
    #[error("{}: not a valid safetensors file: {reason}", path.display())]
    Safetensors {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A PyTorch checkpoint (`torch.save` of a `state_dict`, zip or legacy format) is malformed,
    /// or holds something a `state_dict` does not (see [`PthError`]).
    #[error("{}: cannot read as a PyTorch checkpoint: {source}", path.display())]
    Pth {
        /// The file (or the label given for bytes in memory).
        path: PathBuf,
        /// What is wrong.
        source: PthError,
    },
    /// Two tensors have the same name once a DataParallel `module.` prefix is stripped.
    #[error("tensor `{name}` appears twice in {} (once with a `module.` prefix)", path.display())]
    DuplicateTensor {
        /// The name without the prefix.
        name: String,
        /// The file.
        path: PathBuf,
    },
    /// An expected tensor is absent.
    #[error("missing tensor `{name}`{context}")]
    MissingTensor {
        /// The tensor's name.
        name: String,
        /// Where it was looked for.
        context: String,
    },
    /// A tensor has the wrong shape.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor's name.
        name: String,
        /// Its shape in the file.
        found: Vec<usize>,
        /// The shape the model needs.
        expected: Vec<usize>,
    },
    /// A tensor is stored in a dtype we do not read.
    #[error("tensor `{name}` has unsupported dtype {dtype}; expected {expected}")]
    UnsupportedDtype {
        /// The tensor's name.
        name: String,
        /// Its dtype in the file.
        dtype: String,
        /// The dtypes that are accepted.
        expected: &'static str,
    },
    /// A tensor holds values the model cannot use (non-finite, negative variance, overflow when folded).
    #[error("tensor `{name}` in {}: {reason}", path.display())]
    InvalidTensor {
        /// The tensor's name.
        name: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The weights hold tensors the model does not use (often: another model's weights).
    #[error("weights hold {count} tensor(s) this model does not use, e.g. {examples}; are they another model's weights?")]
    UnexpectedTensors {
        /// How many.
        count: usize,
        /// The first few names.
        examples: String,
    },
    /// The input tensor or image does not fit the model.
    #[error("invalid input: {0}")]
    Input(String),
    /// An image file could not be decoded.
    #[error("image {}: {reason}", path.display())]
    Image {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// No GPU adapter, or the adapter refused a device.
    #[error("gpu: {0}")]
    NoAdapter(String),
    /// The device lacks a feature this needs (e.g. `shader-f16` for f16 storage).
    #[error(
        "gpu: the device on `{adapter}` lacks the `{feature}` feature, which {needed_for} needs"
    )]
    UnsupportedFeature {
        /// The feature's WebGPU name.
        feature: &'static str,
        /// The adapter's name.
        adapter: String,
        /// What needs it.
        needed_for: String,
    },
    /// A device limit is below what is needed.
    #[error("gpu: {what} needs `{limit}` of at least {needed}; the device has {have}{advice}")]
    DeviceLimit {
        /// What needs it (a buffer, a dispatch, the runner).
        what: String,
        /// The limit's name in `wgpu::Limits`.
        limit: &'static str,
        /// The device's value.
        have: u64,
        /// The value needed.
        needed: u64,
        /// What to do about it (starts with `; ` when present).
        advice: String,
    },
    /// The device ran out of memory.
    #[error("gpu: out of device memory {0}")]
    OutOfMemory(String),
    /// The device was lost (driver reset, GPU removed, host destroyed it).
    #[error("gpu: device lost: {0}")]
    DeviceLost(String),
    /// The plan holds something the GPU runner cannot lower.
    #[error("gpu: unsupported plan: {0}")]
    InvalidPlan(String),
    /// An element count or index would overflow the kernels' 32-bit index arithmetic.
    #[error("gpu: {what} is {count}, over the {max} the kernels' 32-bit index arithmetic can address; use a smaller batch or input")]
    IndexOverflow {
        /// What overflows.
        what: String,
        /// Its value.
        count: u64,
        /// The largest value the kernels handle.
        max: u64,
    },
    /// A value that the storage precision cannot hold (an f16 overflow, a non-finite result):
    /// the result would be wrong, so none is returned.
    #[error("{precision} storage cannot hold {what}; run in f32 (or scale the input)")]
    PrecisionOverflow {
        /// `f16` or `f32`.
        precision: &'static str,
        /// Which value: a weight tensor, the input, or the output of an op.
        what: String,
    },
    /// Any other failure of the GPU path (a wgpu validation error).
    #[error("gpu: {0}")]
    Gpu(String),
    /// A chart that cannot be drawn (`plot` module): what is wrong with which axis or series.
    #[error("plot: {0}")]
    Plot(String),
}

/// What is wrong with a PyTorch checkpoint ([`Error::Pth`]).
#[derive(Debug, thiserror::Error)]
pub enum PthError {
    /// The file or one of its parts ends early.
    #[error("truncated: the {what} ends early")]
    Truncated {
        /// Which part (`pickle`, a storage, ...).
        what: &'static str,
    },
    /// A pickle opcode that a `state_dict` does not need (and so is never run).
    #[error("pickle opcode 0x{opcode:02x} at byte {offset} is not one a state_dict uses; refused")]
    Opcode {
        /// The opcode byte.
        opcode: u8,
        /// Where, in the pickle.
        offset: usize,
    },
    /// A global (a class or function) that a `state_dict` does not need (and so is never run).
    #[error("the pickle names `{module}.{name}`, which is not allowed (only OrderedDict, torch's tensor rebuild functions and storage classes are)")]
    DisallowedGlobal {
        /// Its module.
        module: String,
        /// Its name.
        name: String,
    },
    /// A call (REDUCE) on something that is not an allowed callable.
    #[error("the pickle calls {what}, which is not allowed")]
    DisallowedCall {
        /// What it tried to call.
        what: String,
    },
    /// A pickle that does not make sense (stack underflow, wrong argument types, ...).
    #[error("malformed pickle at byte {offset}: {reason}")]
    Malformed {
        /// Where, in the pickle.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// A resource limit (nesting depth, copies of memoized values).
    #[error("over a limit: {what}")]
    Limit {
        /// Which.
        what: String,
    },
    /// Something valid in torch that this reader does not handle.
    #[error("unsupported: {what}")]
    Unsupported {
        /// What.
        what: String,
    },
    /// The pickle's object is not a `state_dict` (a dict of names to tensors).
    #[error("not a state_dict: {reason}")]
    NotAStateDict {
        /// Why.
        reason: String,
    },
    /// A tensor refers to a storage the file does not hold.
    #[error("tensor `{tensor}` refers to storage `{key}`, which the file does not hold")]
    MissingStorage {
        /// The tensor's name.
        tensor: String,
        /// The storage's key.
        key: String,
    },
    /// A storage's data do not have the size its reference says.
    #[error("storage `{key}` holds {found} bytes, but its reference says {expected}")]
    StorageSize {
        /// The storage's key.
        key: String,
        /// Bytes expected (elements x element size).
        expected: u64,
        /// Bytes found.
        found: u64,
    },
    /// A tensor's offset, sizes or strides reach outside its storage (or overflow).
    #[error("tensor `{tensor}`: {reason}")]
    OutOfRange {
        /// The tensor's name.
        tensor: String,
        /// What is out of range.
        reason: String,
    },
    /// The zip container is malformed, or an entry is compressed.
    #[error("zip archive: {reason}")]
    Zip {
        /// What is wrong.
        reason: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A [`Error::DeviceLimit`] on `max_storage_buffer_binding_size`: `what` needs a binding of
    /// `needed` bytes, the device allows `have`; `advice` starts with `; ` when present.
    #[cfg(feature = "gpu")]
    pub(crate) fn binding_limit(what: String, have: u64, needed: u64, advice: &str) -> Self {
        Error::DeviceLimit {
            what,
            limit: "max_storage_buffer_binding_size",
            have,
            needed,
            advice: advice.to_string(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
