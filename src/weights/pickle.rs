//! A restricted pickle reader: the subset of Python's pickle that `torch.save(state_dict)`
//! writes, and nothing else.
//!
//! It never calls anything: the few globals it accepts (`collections.OrderedDict`, torch's
//! tensor rebuild functions `torch._utils._rebuild_tensor_v2`, `_rebuild_tensor` (torch < 0.4),
//! `_rebuild_parameter`, `_rebuild_parameter_with_state`, and the storage classes
//! `torch.FloatStorage`, `HalfStorage`, `BFloat16Storage`, `LongStorage`, ...) are recognised by name and interpreted here;
//! every other global, every other opcode and every call on anything else is an error that
//! names it ([`PthError`]). Values are plain data ([`Value`]), bounded in nesting depth and in
//! the work spent copying memoized values, so a hostile pickle cannot exhaust the stack or the
//! memory.
//!
//! Opcodes accepted (protocols 2 to 5, which is what torch writes: protocol 2 by default,
//! FRAME / SHORT_BINUNICODE / MEMOIZE / STACK_GLOBAL when `pickle_protocol=4`): PROTO, FRAME,
//! STOP, MARK, POP, POP_MARK, EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, TUPLE, TUPLE1-3, BINUNICODE,
//! SHORT_BINUNICODE, BINUNICODE8, SHORT_BINSTRING and BINSTRING (Python 2's `str`, in
//! checkpoints saved by Python 2, UTF-8 only), BININT, BININT1, BININT2, LONG1 (up to 16 bytes), NONE,
//! NEWTRUE, NEWFALSE, BINPUT, LONG_BINPUT, MEMOIZE, BINGET, LONG_BINGET, SETITEM, SETITEMS,
//! APPEND, APPENDS, GLOBAL and STACK_GLOBAL (allowed names only), REDUCE (on an allowed
//! callable only), BINPERSID (a torch storage reference only) and BUILD (on an OrderedDict:
//! the `_metadata` state torch attaches to a state_dict, accepted and ignored).

use std::collections::HashMap;

use crate::error::PthError;

/// Element types of torch's storage classes (`torch.FloatStorage`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageDtype {
    /// `FloatStorage`.
    F32,
    /// `HalfStorage`.
    F16,
    /// `BFloat16Storage`.
    BF16,
    /// `DoubleStorage`.
    F64,
    /// `LongStorage` (`num_batches_tracked`).
    I64,
    /// `IntStorage`.
    I32,
    /// `ShortStorage`.
    I16,
    /// `CharStorage`.
    I8,
    /// `ByteStorage`.
    U8,
    /// `BoolStorage`.
    Bool,
}

impl StorageDtype {
    fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "DoubleStorage" => Self::F64,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    /// The name safetensors uses for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::F64 => "F64",
            Self::I64 => "I64",
            Self::I32 => "I32",
            Self::I16 => "I16",
            Self::I8 => "I8",
            Self::U8 => "U8",
            Self::Bool => "BOOL",
        }
    }
}

/// A storage a tensor points into: torch's persistent id `('storage', StorageClass, key,
/// location, numel[, view_metadata])`.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    /// Element type.
    pub dtype: StorageDtype,
    /// The key naming its data (`data/<key>` in a zip archive; the legacy format's key list).
    pub key: String,
    /// Number of elements it holds.
    pub numel: u64,
}

/// A tensor as `torch._utils._rebuild_tensor_v2` describes it: a strided view of a storage.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    /// Its storage.
    pub storage: StorageRef,
    /// Offset into the storage, in elements.
    pub offset: u64,
    /// Sizes.
    pub shape: Vec<u64>,
    /// Strides, in elements.
    pub stride: Vec<u64>,
}

/// The globals a state_dict's pickle may name.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    Storage(StorageDtype),
}

impl Global {
    fn resolve(module: &str, name: &str) -> Option<Global> {
        Some(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
            ("torch", class) => Global::Storage(StorageDtype::from_class(class)?),
            _ => return None,
        })
    }
}

/// A value of the restricted pickle language.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer (LONG1 up to 16 bytes: torch's legacy magic number takes 10).
    Int(i128),
    /// A `str`.
    Str(String),
    /// A tuple, with its nesting depth.
    Tuple(Vec<Value>, u32),
    /// A list, with its nesting depth.
    List(Vec<Value>, u32),
    /// A dict (`ordered` for `OrderedDict`), in insertion order, with its nesting depth.
    Dict {
        /// Key-value pairs in insertion order (a repeated key is kept twice; callers decide).
        items: Vec<(Value, Value)>,
        /// `collections.OrderedDict` rather than `dict`.
        ordered: bool,
        /// Nesting depth.
        depth: u32,
    },
    /// An allowed global, not yet called.
    Global(GlobalValue),
    /// A storage reference (BINPERSID), boxed to keep values small.
    Storage(Box<StorageRef>),
    /// A rebuilt tensor, boxed to keep values small.
    Tensor(Box<TensorRef>),
}

/// An allowed global as a value (opaque outside this module).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GlobalValue(Global);

impl Value {
    fn depth(&self) -> u32 {
        match self {
            Value::Tuple(_, d) | Value::List(_, d) | Value::Dict { depth: d, .. } => *d,
            _ => 0,
        }
    }

    /// A short description for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Str(_) => "a str",
            Value::Tuple(..) => "a tuple",
            Value::List(..) => "a list",
            Value::Dict { .. } => "a dict",
            Value::Global(_) => "a global",
            Value::Storage(_) => "a storage",
            Value::Tensor(_) => "a tensor",
        }
    }

    /// Counts the nodes of the value (for the copy budget).
    fn nodes(&self) -> usize {
        match self {
            Value::Tuple(v, _) | Value::List(v, _) => 1 + v.iter().map(Value::nodes).sum::<usize>(),
            Value::Dict { items, .. } => {
                1 + items
                    .iter()
                    .map(|(k, v)| k.nodes() + v.nodes())
                    .sum::<usize>()
            }
            Value::Str(s) => 1 + s.len() / 16,
            Value::Tensor(t) => 1 + t.shape.len() + t.storage.key.len() / 16,
            Value::Storage(s) => 1 + s.key.len() / 16,
            _ => 1,
        }
    }
}

/// Deepest nesting of containers accepted (a state_dict needs 4: `_metadata`'s dict of dicts).
pub const MAX_DEPTH: u32 = 64;

/// Most values on the stack and in the memo (torch's pickles hold a few per tensor: the
/// stack peaks at 2 x 1000 during a SETITEMS batch, the memo at ~10 per tensor). With values
/// of 32 bytes this bounds either to about 128 MiB whatever the file's size.
pub const MAX_ITEMS: usize = 1 << 22;

enum Item {
    Value(Value),
    Mark,
}

/// Reads one pickle from the start of `bytes`; returns its value and the number of bytes it
/// took (up to and including STOP), so that several pickles in a row can be read.
pub fn load(bytes: &[u8]) -> Result<(Value, usize), PthError> {
    Unpickler {
        bytes,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        // Copying memoized values (BINGET) costs at most this many nodes in all: torch's
        // pickles copy strings, globals and the odd shared tensor, a few per tensor.
        copy_budget: bytes.len().saturating_mul(8).saturating_add(1 << 16),
    }
    .run()
}

struct Unpickler<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    memo: HashMap<u32, Value>,
    copy_budget: usize,
}

impl Unpickler<'_> {
    fn malformed(&self, at: usize, reason: impl Into<String>) -> PthError {
        PthError::Malformed {
            offset: at,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], PthError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(PthError::Truncated { what })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PthError> {
        Ok(self.take(1, "pickle")?[0])
    }

    fn u16(&mut self) -> Result<u16, PthError> {
        let b = self.take(2, "pickle")?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, PthError> {
        let b = self.take(4, "pickle")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, PthError> {
        let b = self.take(8, "pickle")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn string(&mut self, n: u64, at: usize) -> Result<Value, PthError> {
        let n = usize::try_from(n).map_err(|_| PthError::Truncated { what: "pickle" })?;
        let b = self.take(n, "pickle")?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(Value::Str(s.to_string())),
            Err(_) => Err(self.malformed(at, "a string that is not UTF-8")),
        }
    }

    fn push(&mut self, v: Value) {
        self.stack.push(Item::Value(v));
    }

    fn check_sizes(&self, at: usize) -> Result<(), PthError> {
        if self.stack.len() > MAX_ITEMS || self.memo.len() > MAX_ITEMS {
            return Err(PthError::Limit {
                what: format!(
                    "over {MAX_ITEMS} values on the pickle's stack or in its memo (at byte {at})"
                ),
            });
        }
        Ok(())
    }

    fn pop(&mut self, at: usize) -> Result<Value, PthError> {
        match self.stack.pop() {
            Some(Item::Value(v)) => Ok(v),
            Some(Item::Mark) => Err(self.malformed(at, "a value expected, a MARK found")),
            None => Err(self.malformed(at, "stack underflow")),
        }
    }

    fn top_mut(&mut self, at: usize) -> Result<&mut Value, PthError> {
        match self.stack.last_mut() {
            Some(Item::Value(v)) => Ok(v),
            _ => Err(PthError::Malformed {
                offset: at,
                reason: "a value expected on the stack".into(),
            }),
        }
    }

    /// Pops everything down to the last MARK (and the mark).
    fn pop_mark(&mut self, at: usize) -> Result<Vec<Value>, PthError> {
        let mark = self
            .stack
            .iter()
            .rposition(|i| matches!(i, Item::Mark))
            .ok_or_else(|| self.malformed(at, "no MARK on the stack"))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .map(|i| match i {
                Item::Value(v) => v,
                Item::Mark => unreachable!("the last mark was found above"),
            })
            .collect())
    }

    fn container_depth(&self, items: &[Value], at: usize) -> Result<u32, PthError> {
        let d = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        if d > MAX_DEPTH {
            return Err(PthError::Limit {
                what: format!("containers nested deeper than {MAX_DEPTH} (at byte {at})"),
            });
        }
        Ok(d)
    }

    fn tuple(&self, items: Vec<Value>, at: usize) -> Result<Value, PthError> {
        let d = self.container_depth(&items, at)?;
        Ok(Value::Tuple(items, d))
    }

    fn memo_put(&mut self, key: u32, at: usize) -> Result<(), PthError> {
        let n = match self.stack.last() {
            Some(Item::Value(v)) => v.nodes(),
            _ => return Err(self.malformed(at, "memoizing an empty stack or a MARK")),
        };
        self.charge(n, at)?;
        if let Some(Item::Value(v)) = self.stack.last() {
            self.memo.insert(key, v.clone());
        }
        Ok(())
    }

    fn memo_get(&mut self, key: u32, at: usize) -> Result<(), PthError> {
        let v = self
            .memo
            .get(&key)
            .ok_or_else(|| self.malformed(at, format!("memo key {key} was never stored")))?;
        let n = v.nodes();
        let v = v.clone();
        self.charge(n, at)?;
        self.push(v);
        Ok(())
    }

    fn charge(&mut self, nodes: usize, at: usize) -> Result<(), PthError> {
        self.copy_budget = self
            .copy_budget
            .checked_sub(nodes)
            .ok_or_else(|| PthError::Limit {
                what: format!("memoized values copied too often (at byte {at})"),
            })?;
        Ok(())
    }

    fn set_items(&mut self, pairs: Vec<Value>, at: usize) -> Result<(), PthError> {
        if !pairs.len().is_multiple_of(2) {
            return Err(self.malformed(at, "SETITEMS with an odd number of values"));
        }
        let extra = pairs.iter().map(Value::depth).max().unwrap_or(0);
        let target = self.top_mut(at)?;
        let Value::Dict { items, depth, .. } = target else {
            let kind = target.kind();
            return Err(PthError::Malformed {
                offset: at,
                reason: format!("SETITEM(S) on {kind}, not a dict"),
            });
        };
        *depth = (*depth).max(extra + 1);
        if *depth > MAX_DEPTH {
            return Err(PthError::Limit {
                what: format!("containers nested deeper than {MAX_DEPTH} (at byte {at})"),
            });
        }
        let mut it = pairs.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            items.push((k, v));
        }
        Ok(())
    }

    fn append(&mut self, values: Vec<Value>, at: usize) -> Result<(), PthError> {
        let extra = values.iter().map(Value::depth).max().unwrap_or(0);
        let target = self.top_mut(at)?;
        let Value::List(items, depth) = target else {
            let kind = target.kind();
            return Err(PthError::Malformed {
                offset: at,
                reason: format!("APPEND(S) on {kind}, not a list"),
            });
        };
        *depth = (*depth).max(extra + 1);
        if *depth > MAX_DEPTH {
            return Err(PthError::Limit {
                what: format!("containers nested deeper than {MAX_DEPTH} (at byte {at})"),
            });
        }
        items.extend(values);
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Result<(), PthError> {
        let g = Global::resolve(module, name).ok_or_else(|| PthError::DisallowedGlobal {
            module: module.chars().take(200).collect(),
            name: name.chars().take(200).collect(),
        })?;
        self.push(Value::Global(GlobalValue(g)));
        Ok(())
    }

    /// GLOBAL's argument: `module\nname\n`.
    fn line(&mut self, at: usize) -> Result<String, PthError> {
        let rest = &self.bytes[self.pos..];
        let n = rest
            .iter()
            .take(1024)
            .position(|&b| b == b'\n')
            .ok_or(PthError::Truncated { what: "pickle" })?;
        let s = std::str::from_utf8(&rest[..n])
            .map_err(|_| self.malformed(at, "a GLOBAL name that is not UTF-8"))?
            .to_string();
        self.pos += n + 1;
        Ok(s)
    }

    fn reduce(&mut self, at: usize) -> Result<(), PthError> {
        let args = self.pop(at)?;
        let callable = self.pop(at)?;
        let Value::Tuple(args, _) = args else {
            return Err(self.malformed(at, format!("REDUCE with {} as arguments", args.kind())));
        };
        let Value::Global(GlobalValue(g)) = callable else {
            return Err(PthError::DisallowedCall {
                what: callable.kind().to_string(),
            });
        };
        let v = match g {
            Global::OrderedDict if args.is_empty() => Value::Dict {
                items: Vec::new(),
                ordered: true,
                depth: 1,
            },
            Global::OrderedDict => {
                return Err(self.malformed(at, "OrderedDict called with arguments"))
            }
            Global::RebuildTensorV2 => Value::Tensor(Box::new(rebuild_tensor(args, at)?)),
            Global::RebuildTensor => {
                // torch < 0.4: (storage, offset, size, stride), no requires_grad nor hooks.
                let mut args = args;
                if args.len() != 4 {
                    return Err(self.malformed(at, "_rebuild_tensor without 4 arguments"));
                }
                args.extend([Value::Bool(false), Value::None]);
                Value::Tensor(Box::new(rebuild_tensor(args, at)?))
            }
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                match args.into_iter().next() {
                    Some(Value::Tensor(t)) => Value::Tensor(t),
                    _ => {
                        return Err(self.malformed(at, "_rebuild_parameter without a tensor"));
                    }
                }
            }
            Global::Storage(d) => {
                return Err(PthError::DisallowedCall {
                    what: format!("torch.{}Storage (a storage class)", d.name()),
                })
            }
        };
        self.push(v);
        Ok(())
    }

    fn persistent_load(&mut self, pid: Value, at: usize) -> Result<Value, PthError> {
        let bad = |why: &str| PthError::Malformed {
            offset: at,
            reason: format!("persistent id {why}"),
        };
        let Value::Tuple(items, _) = pid else {
            return Err(bad("is not a tuple"));
        };
        let mut it = items.into_iter();
        match it.next() {
            Some(Value::Str(s)) if s == "storage" => {}
            _ => return Err(bad("is not a ('storage', ...) tuple")),
        }
        let dtype = match it.next() {
            Some(Value::Global(GlobalValue(Global::Storage(d)))) => d,
            _ => return Err(bad("names no storage class")),
        };
        let key = match it.next() {
            Some(Value::Str(s)) => s,
            _ => return Err(bad("has no string key")),
        };
        match it.next() {
            Some(Value::Str(_)) => {} // location, e.g. "cpu" or "cuda:0": data are in the file
            _ => return Err(bad("has no location")),
        }
        let numel = match it.next() {
            Some(Value::Int(n)) => u64::try_from(n).map_err(|_| bad("has a negative size"))?,
            _ => return Err(bad("has no element count")),
        };
        match it.next() {
            None | Some(Value::None) => {}
            Some(_) => {
                return Err(PthError::Unsupported {
                    what: format!(
                        "storage `{key}` is a view of another storage (torch < 0.4 legacy format)"
                    ),
                })
            }
        }
        if it.next().is_some() {
            return Err(bad("has too many fields"));
        }
        Ok(Value::Storage(Box::new(StorageRef { dtype, key, numel })))
    }

    fn run(mut self) -> Result<(Value, usize), PthError> {
        loop {
            let at = self.pos;
            self.check_sizes(at)?;
            let op = self.u8()?;
            if op == b'.' {
                // STOP
                let v = self.pop(at)?;
                return Ok((v, self.pos));
            }
            self.step(op, at)?;
        }
    }

    /// One opcode (STOP aside), by what it works on.
    fn step(&mut self, op: u8, at: usize) -> Result<(), PthError> {
        match op {
            0x80 | 0x95 => self.op_framing(op),
            b'(' | b'0' | b'1' | b'}' | b']' | b')' | b't' | 0x85..=0x87 => self.op_stack(op, at),
            b'X' | 0x8c | b'U' | b'T' | 0x8d => self.op_string(op, at),
            b'J' | b'K' | b'M' | 0x8a | b'N' | 0x88 | 0x89 => self.op_scalar(op, at),
            b'q' | b'r' | 0x94 | b'h' | b'j' => self.op_memo(op, at),
            b's' | b'u' | b'a' | b'e' => self.op_fill(op, at),
            b'c' | 0x93 | b'R' | b'Q' | b'b' => self.op_object(op, at),
            _ => Err(PthError::Opcode {
                opcode: op,
                offset: at,
            }),
        }
    }

    /// An opcode a group below was handed but does not know (a bug in [`step`](Self::step)'s
    /// table, reported as the unknown opcode it would otherwise be).
    fn unknown(op: u8, at: usize) -> Result<(), PthError> {
        Err(PthError::Opcode {
            opcode: op,
            offset: at,
        })
    }

    /// PROTO (2 to 5 accepted) and FRAME (a length hint only).
    fn op_framing(&mut self, op: u8) -> Result<(), PthError> {
        if op == 0x95 {
            self.u64()?;
            return Ok(());
        }
        let p = self.u8()?;
        if !(2..=5).contains(&p) {
            return Err(PthError::Unsupported {
                what: format!("pickle protocol {p}"),
            });
        }
        Ok(())
    }

    /// MARK, POP, POP_MARK, the empty containers, TUPLE and TUPLE1-3.
    fn op_stack(&mut self, op: u8, at: usize) -> Result<(), PthError> {
        match op {
            b'(' => self.stack.push(Item::Mark),
            b'0' => {
                self.pop(at)?;
            }
            b'1' => {
                self.pop_mark(at)?;
            }
            b'}' => self.push(Value::Dict {
                items: Vec::new(),
                ordered: false,
                depth: 1,
            }),
            b']' => self.push(Value::List(Vec::new(), 1)),
            b')' => self.push(Value::Tuple(Vec::new(), 1)),
            b't' => {
                let items = self.pop_mark(at)?;
                let t = self.tuple(items, at)?;
                self.push(t);
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.pop(at)?);
                }
                items.reverse();
                let t = self.tuple(items, at)?;
                self.push(t);
            }
            _ => return Self::unknown(op, at),
        }
        Ok(())
    }

    /// The string opcodes: BINUNICODE, SHORT_BINUNICODE, BINUNICODE8 and Python 2's
    /// SHORT_BINSTRING and BINSTRING, by the width of their length.
    fn op_string(&mut self, op: u8, at: usize) -> Result<(), PthError> {
        let n = match op {
            0x8c | b'U' => self.u8()? as u64,
            b'X' | b'T' => self.u32()? as u64,
            0x8d => self.u64()?,
            _ => return Self::unknown(op, at),
        };
        let s = self.string(n, at)?;
        self.push(s);
        Ok(())
    }

    /// Integers (BININT, BININT1, BININT2, LONG1), None and the booleans.
    fn op_scalar(&mut self, op: u8, at: usize) -> Result<(), PthError> {
        let v = match op {
            b'J' => Value::Int(self.u32()? as i32 as i128),
            b'K' => Value::Int(self.u8()? as i128),
            b'M' => Value::Int(self.u16()? as i128),
            0x8a => Value::Int(self.long1(at)?),
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            0x89 => Value::Bool(false),
            _ => return Self::unknown(op, at),
        };
        self.push(v);
        Ok(())
    }

    /// LONG1: n bytes, little-endian two's complement (at most 16).
    fn long1(&mut self, at: usize) -> Result<i128, PthError> {
        let n = self.u8()? as usize;
        if n > 16 {
            return Err(PthError::Unsupported {
                what: format!("a {n}-byte integer (at byte {at})"),
            });
        }
        let b = self.take(n, "pickle")?;
        let mut a = if b.last().is_some_and(|&x| x & 0x80 != 0) {
            [0xffu8; 16]
        } else {
            [0u8; 16]
        };
        a[..n].copy_from_slice(b);
        Ok(i128::from_le_bytes(a))
    }

    /// BINPUT, LONG_BINPUT, MEMOIZE, BINGET, LONG_BINGET.
    fn op_memo(&mut self, op: u8, at: usize) -> Result<(), PthError> {
        match op {
            b'q' => {
                let k = self.u8()? as u32;
                self.memo_put(k, at)
            }
            b'r' => {
                let k = self.u32()?;
                self.memo_put(k, at)
            }
            0x94 => {
                let k =
                    u32::try_from(self.memo.len()).map_err(|_| self.malformed(at, "memo full"))?;
                self.memo_put(k, at)
            }
            b'h' => {
                let k = self.u8()? as u32;
                self.memo_get(k, at)
            }
            b'j' => {
                let k = self.u32()?;
                self.memo_get(k, at)
            }
            _ => Self::unknown(op, at),
        }
    }

    /// SETITEM, SETITEMS, APPEND, APPENDS.
    fn op_fill(&mut self, op: u8, at: usize) -> Result<(), PthError> {
        match op {
            b's' => {
                let v = self.pop(at)?;
                let k = self.pop(at)?;
                self.set_items(vec![k, v], at)
            }
            b'u' => {
                let items = self.pop_mark(at)?;
                self.set_items(items, at)
            }
            b'a' => {
                let v = self.pop(at)?;
                self.append(vec![v], at)
            }
            b'e' => {
                let items = self.pop_mark(at)?;
                self.append(items, at)
            }
            _ => Self::unknown(op, at),
        }
    }

    /// GLOBAL, STACK_GLOBAL, REDUCE, BINPERSID and BUILD: the allow-listed objects.
    fn op_object(&mut self, op: u8, at: usize) -> Result<(), PthError> {
        match op {
            b'c' => {
                let module = self.line(at)?;
                let name = self.line(at)?;
                self.global(&module, &name)
            }
            0x93 => {
                let name = self.pop(at)?;
                let module = self.pop(at)?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => self.global(&m, &n),
                    _ => Err(self.malformed(at, "STACK_GLOBAL without two strings")),
                }
            }
            b'R' => self.reduce(at),
            b'Q' => {
                let pid = self.pop(at)?;
                let s = self.persistent_load(pid, at)?;
                self.push(s);
                Ok(())
            }
            b'b' => self.build(at),
            _ => Self::unknown(op, at),
        }
    }

    /// BUILD: only an OrderedDict's state (torch's `_metadata`), ignored.
    fn build(&mut self, at: usize) -> Result<(), PthError> {
        let state = self.pop(at)?;
        let target = self.top_mut(at)?;
        if !matches!(target, Value::Dict { ordered: true, .. })
            || !matches!(state, Value::Dict { .. })
        {
            let (t, s) = (target.kind(), state.kind());
            return Err(PthError::Malformed {
                offset: at,
                reason: format!(
                    "BUILD of {t} with {s}: only an OrderedDict's attributes are accepted"
                ),
            });
        }
        Ok(())
    }
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[,
/// metadata])`.
fn rebuild_tensor(args: Vec<Value>, at: usize) -> Result<TensorRef, PthError> {
    let bad = |why: String| PthError::Malformed {
        offset: at,
        reason: format!("_rebuild_tensor_v2 {why}"),
    };
    if !(6..=7).contains(&args.len()) {
        return Err(bad(format!("with {} arguments, not 6 or 7", args.len())));
    }
    let mut it = args.into_iter();
    let storage = match it.next() {
        Some(Value::Storage(s)) => *s,
        Some(v) => return Err(bad(format!("on {}, not a storage", v.kind()))),
        None => unreachable!("6 or 7 arguments"),
    };
    let offset = match it.next() {
        Some(Value::Int(n)) => {
            u64::try_from(n).map_err(|_| bad("with a negative storage offset".into()))?
        }
        _ => return Err(bad("without an integer storage offset".into())),
    };
    let ints = |v: Option<Value>, what: &str| -> Result<Vec<u64>, PthError> {
        match v {
            Some(Value::Tuple(items, _)) => items
                .into_iter()
                .map(|i| match i {
                    Value::Int(n) => {
                        u64::try_from(n).map_err(|_| bad(format!("with a negative {what} ({n})")))
                    }
                    other => Err(bad(format!("with {} in its {what}", other.kind()))),
                })
                .collect(),
            _ => Err(bad(format!("without a {what} tuple"))),
        }
    };
    let shape = ints(it.next(), "size")?;
    let stride = ints(it.next(), "stride")?;
    if shape.len() != stride.len() {
        return Err(bad(format!(
            "with {} sizes but {} strides",
            shape.len(),
            stride.len()
        )));
    }
    // requires_grad, backward_hooks (an empty OrderedDict) and metadata: not needed.
    Ok(TensorRef {
        storage,
        offset,
        shape,
        stride,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ints_strings_and_containers() {
        // PROTO 2, MARK, BININT1 1, BININT2 0x1234, BININT -2, LONG1 (10 bytes), TUPLE, STOP
        let mut p = vec![0x80, 2, b'(', b'K', 1, b'M', 0x34, 0x12, b'J'];
        p.extend((-2i32).to_le_bytes());
        p.extend([0x8a, 10]);
        p.extend(&0x1950a86a20f9469cfc6cu128.to_le_bytes()[..10]);
        p.extend([b'X', 2, 0, 0, 0, b'h', b'i', b't', b'.']);
        let (v, n) = load(&p).unwrap();
        assert_eq!(n, p.len());
        let Value::Tuple(items, 1) = v else {
            panic!("{v:?}")
        };
        assert_eq!(
            items,
            vec![
                Value::Int(1),
                Value::Int(0x1234),
                Value::Int(-2),
                Value::Int(0x1950a86a20f9469cfc6c),
                Value::Str("hi".into())
            ]
        );
    }

    #[test]
    fn refuses_other_globals_and_opcodes() {
        let p = b"\x80\x02cos\nsystem\n.";
        assert!(matches!(
            load(p),
            Err(PthError::DisallowedGlobal { module, name }) if module == "os" && name == "system"
        ));
        // INST (protocol 0) is not accepted.
        assert!(matches!(
            load(b"\x80\x02(ios\nsystem\n."),
            Err(PthError::Opcode { opcode: b'i', .. })
        ));
        assert!(matches!(load(b"\x80\x02"), Err(PthError::Truncated { .. })));
    }

    #[test]
    fn reads_torch_0_3_tensors_and_python_2_strings() {
        // OrderedDict(); SETITEM 'w' -> _rebuild_tensor(storage, 1, (2,), (1,))
        let mut p = b"\x80\x02ccollections\nOrderedDict\n)RU\x01w".to_vec();
        p.extend(b"ctorch._utils\n_rebuild_tensor\n(");
        p.extend(b"(T\x07\x00\x00\x00storagectorch\nFloatStorage\nU\x010U\x03cpuK\x03NtQ");
        p.extend(b"K\x01K\x02\x85K\x01\x85tRs.");
        let (v, _) = load(&p).unwrap();
        let Value::Dict { items, .. } = v else {
            panic!("{v:?}")
        };
        let (Value::Str(k), Value::Tensor(t)) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(k, "w");
        assert_eq!((t.offset, &t.shape, &t.stride), (1, &vec![2], &vec![1]));
        assert_eq!((t.storage.key.as_str(), t.storage.numel), ("0", 3));
    }

    #[test]
    fn values_are_small() {
        assert!(
            std::mem::size_of::<Value>() <= 32,
            "{}",
            std::mem::size_of::<Value>()
        );
        assert!(std::mem::size_of::<Item>() <= 32);
    }

    #[test]
    fn stack_and_memo_are_bounded() {
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat_n(b'(', MAX_ITEMS + 1));
        assert!(matches!(load(&p), Err(PthError::Limit { .. })));
        let mut p = vec![0x80, 4];
        p.extend(std::iter::repeat_n([b'N', 0x94, b'0'], MAX_ITEMS + 1).flatten());
        assert!(matches!(load(&p), Err(PthError::Limit { .. })));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut p = vec![0x80, 2];
        p.extend([b']'; 100]);
        p.extend([b'a'; 99]);
        p.push(b'.');
        assert!(matches!(load(&p), Err(PthError::Limit { .. })));
    }

    #[test]
    fn copies_are_bounded() {
        // A tuple memoized, then replaced by a pair of copies of itself, over and over: each
        // BINGET copies twice as much as the one before; refused long before it blows up.
        let mut p = vec![0x80, 2, b')', b'q', 0, b'0'];
        for _ in 0..40 {
            p.extend([b'h', 0, b'h', 0, 0x86, b'q', 0, b'0']);
        }
        p.extend([b'N', b'.']);
        assert!(
            matches!(load(&p), Err(PthError::Limit { .. })),
            "{:?}",
            load(&p)
        );
    }
}
