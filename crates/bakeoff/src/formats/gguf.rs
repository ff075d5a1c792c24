//! A GGUF reader (versions 2 and 3, little- and big-endian): metadata of every value type including
//! nested arrays, and tensor infos. It never reads tensor data and never allocates from a count it
//! has not checked against the bytes left in the file; a malformed, truncated or hostile file gives
//! a [`GgufError`] naming the byte offset and the field being read.

use std::io::{BufReader, Read};
use std::path::Path;

const MAGIC: &[u8; 4] = b"GGUF";
/// Nested arrays deeper than this are refused (real files nest at most once).
const MAX_DEPTH: usize = 8;
/// Dimensions per tensor in ggml.
const MAX_DIMS: u32 = 4;

// Defined beside the shared error type, which wraps it (the error module is the lowest layer).
pub use crate::error::GgufError;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            Value::Bool(v) => Some(v.into()),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// A short rendering for summaries: arrays show their length and first items.
    pub fn summary(&self) -> String {
        match self {
            Value::String(s) if s.chars().count() > 60 => format!(
                "{:?}… ({} chars)",
                s.chars().take(60).collect::<String>(),
                s.chars().count()
            ),
            Value::String(s) => format!("{s:?}"),
            Value::Array(items) => {
                let head: Vec<String> = items.iter().take(4).map(Value::summary).collect();
                let more = if items.len() > 4 { ", …" } else { "" };
                format!("[{}{more}] ({} items)", head.join(", "), items.len())
            }
            Value::F32(v) => v.to_string(),
            Value::F64(v) => v.to_string(),
            Value::Bool(v) => v.to_string(),
            other => other
                .as_u64()
                .map(|v| v.to_string())
                .unwrap_or_else(|| format!("{other:?}")),
        }
    }
}

/// ggml tensor types: (id, name, elements per block, bytes per block). Ids 4, 5 and 31–33, 36–38
/// were removed from ggml and are refused.
const GGML_TYPES: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 36),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
    (42, "Q2_0", 64, 18),
];

/// A ggml tensor type, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GgmlType(pub u32);

impl GgmlType {
    fn entry(self) -> Option<&'static (u32, &'static str, u64, u64)> {
        GGML_TYPES.iter().find(|t| t.0 == self.0)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        GGML_TYPES
            .iter()
            .find(|t| t.1.eq_ignore_ascii_case(name))
            .map(|t| GgmlType(t.0))
    }

    pub fn name(self) -> &'static str {
        self.entry().map(|t| t.1).unwrap_or("unknown")
    }

    pub fn block_size(self) -> u64 {
        self.entry().map(|t| t.2).unwrap_or(0)
    }

    pub fn block_bytes(self) -> u64 {
        self.entry().map(|t| t.3).unwrap_or(0)
    }

    /// Bytes for a row of `n` elements, as `ggml_row_size` computes it (`None` if `n` is not a
    /// whole number of blocks, the type is unknown, or the size overflows a `u64`).
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let block = self.block_size();
        if block > 0 && n % block == 0 {
            (n / block).checked_mul(self.block_bytes())
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the row length.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of tensor data (checked at read time, so this cannot overflow).
    pub fn bytes(&self) -> u64 {
        let rows: u64 = self.dims.iter().skip(1).product();
        self.ggml_type
            .row_bytes(self.dims.first().copied().unwrap_or(1))
            .unwrap_or(0)
            * rows
    }
}

#[derive(Debug, Clone)]
pub struct GgufFile {
    pub version: u32,
    pub big_endian: bool,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Where tensor data starts.
    pub data_offset: u64,
    pub file_size: u64,
}

impl GgufFile {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// `{arch}.{suffix}`, e.g. `arch_key("block_count")` → `llama.block_count`.
    pub fn arch_key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.architecture().unwrap_or("unknown"))
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Read a GGUF file's header, metadata and tensor infos.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let file = std::fs::File::open(path).map_err(|e| GgufError {
            path: Some(path.to_path_buf()),
            offset: 0,
            field: "file".into(),
            reason: e.to_string(),
        })?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        Self::read(BufReader::with_capacity(1 << 20, file), len).map_err(|mut e| {
            e.path = Some(path.to_path_buf());
            e
        })
    }

    /// Read from any byte source of known total length.
    pub fn read(source: impl Read, len: u64) -> Result<Self, GgufError> {
        Parser {
            source,
            pos: 0,
            len,
            big_endian: false,
        }
        .file()
    }
}

struct Parser<R> {
    source: R,
    pos: u64,
    len: u64,
    big_endian: bool,
}

impl<R: Read> Parser<R> {
    fn fail(&self, field: &str, reason: impl Into<String>) -> GgufError {
        GgufError {
            path: None,
            offset: self.pos,
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    fn bytes<const N: usize>(&mut self, field: &str) -> Result<[u8; N], GgufError> {
        let mut buf = [0u8; N];
        self.source.read_exact(&mut buf).map_err(|e| {
            let reason = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                format!("file ends here (truncated; {} bytes in all)", self.len)
            } else {
                e.to_string()
            };
            self.fail(field, reason)
        })?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u32(&mut self, field: &str) -> Result<u32, GgufError> {
        let b = self.bytes::<4>(field)?;
        Ok(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn u64(&mut self, field: &str) -> Result<u64, GgufError> {
        let b = self.bytes::<8>(field)?;
        Ok(if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// A count of items each at least `min_bytes` long, checked against the bytes left.
    fn count(&mut self, field: &str, min_bytes: u64) -> Result<u64, GgufError> {
        let at = self.pos;
        let n = self.u64(field)?;
        if n.saturating_mul(min_bytes) > self.remaining() {
            return Err(GgufError {
                path: None,
                offset: at,
                field: field.to_string(),
                reason: format!(
                    "count {n} needs at least {} bytes but only {} remain",
                    n.saturating_mul(min_bytes),
                    self.remaining()
                ),
            });
        }
        Ok(n)
    }

    fn string(&mut self, field: &str) -> Result<String, GgufError> {
        let n = self.count(field, 1)? as usize;
        let at = self.pos;
        let mut buf = vec![0u8; n];
        self.source
            .read_exact(&mut buf)
            .map_err(|e| self.fail(field, e.to_string()))?;
        self.pos += n as u64;
        String::from_utf8(buf).map_err(|e| GgufError {
            path: None,
            offset: at + e.utf8_error().valid_up_to() as u64,
            field: field.to_string(),
            reason: "string is not valid UTF-8".into(),
        })
    }

    fn file(mut self) -> Result<GgufFile, GgufError> {
        if &self.bytes::<4>("magic")? != MAGIC {
            self.pos = 0;
            return Err(self.fail(
                "magic",
                "not a GGUF file (the first 4 bytes are not \"GGUF\")",
            ));
        }
        let raw = self.bytes::<4>("version")?;
        let (le, be) = (u32::from_le_bytes(raw), u32::from_be_bytes(raw));
        // A big-endian file's version reads as a huge number little-endian.
        self.big_endian = le > 0xffff && be <= 0xffff;
        let version = if self.big_endian { be } else { le };
        if !(2..=3).contains(&version) {
            self.pos -= 4;
            return Err(self.fail(
                "version",
                format!("unsupported GGUF version {version} (bakeoff reads 2 and 3)"),
            ));
        }
        // A tensor info is at least 8 (name len) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
        let tensor_count = self.count("tensor_count", 24)?;
        // A key/value pair is at least 8 (key len) + 4 (type) + 1 byte.
        let kv_count = self.count("metadata_kv_count", 13)?;
        let mut metadata = Vec::with_capacity(kv_count as usize);
        for i in 0..kv_count {
            let key = self.string(&format!("metadata[{i}].key"))?;
            let type_id = self.u32(&format!("{key} (type)"))?;
            // Errors name the field by its key; an empty key would name nothing.
            let label = if key.is_empty() {
                format!("metadata[{i}] (empty key)")
            } else {
                key.clone()
            };
            let value = self.value(&label, type_id, 0)?;
            metadata.push((key, value));
        }
        let mut tensors = Vec::with_capacity(tensor_count as usize);
        for i in 0..tensor_count {
            tensors.push(self.tensor_info(i)?);
        }
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            Some((_, v)) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(self.fail(
                        "general.alignment",
                        format!("alignment {} is not a power of two", v.summary()),
                    ))
                }
            },
            None => 32,
        };
        let data_offset = self.pos.div_ceil(alignment) * alignment;
        let file = GgufFile {
            version,
            big_endian: self.big_endian,
            metadata,
            tensors,
            alignment,
            data_offset,
            file_size: self.len,
        };
        check_tensor_extents(&file)?;
        Ok(file)
    }

    fn value(&mut self, key: &str, type_id: u32, depth: usize) -> Result<Value, GgufError> {
        Ok(match type_id {
            0 => Value::U8(self.bytes::<1>(key)?[0]),
            1 => Value::I8(self.bytes::<1>(key)?[0] as i8),
            2 => {
                let b = self.bytes::<2>(key)?;
                Value::U16(if self.big_endian {
                    u16::from_be_bytes(b)
                } else {
                    u16::from_le_bytes(b)
                })
            }
            3 => {
                let b = self.bytes::<2>(key)?;
                Value::I16(if self.big_endian {
                    i16::from_be_bytes(b)
                } else {
                    i16::from_le_bytes(b)
                })
            }
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(self.u32(key)? as i32),
            6 => Value::F32(f32::from_bits(self.u32(key)?)),
            7 => match self.bytes::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                other => {
                    self.pos -= 1;
                    return Err(self.fail(key, format!("bool byte is {other}, not 0 or 1")));
                }
            },
            8 => Value::String(self.string(key)?),
            9 => self.array(key, depth)?,
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(self.u64(key)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(key)?)),
            other => {
                self.pos -= 4;
                return Err(self.fail(key, format!("unknown metadata value type {other}")));
            }
        })
    }

    fn array(&mut self, key: &str, depth: usize) -> Result<Value, GgufError> {
        if depth >= MAX_DEPTH {
            return Err(self.fail(key, format!("arrays nested deeper than {MAX_DEPTH}")));
        }
        let item_type = self.u32(&format!("{key} (array item type)"))?;
        let min_item_bytes = match item_type {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8..=12 => 8,
            other => {
                self.pos -= 4;
                return Err(self.fail(key, format!("unknown array item type {other}")));
            }
        };
        let n = self.count(&format!("{key} (array length)"), min_item_bytes)?;
        let mut items = Vec::with_capacity(n as usize);
        for _ in 0..n {
            items.push(self.value(key, item_type, depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn tensor_info(&mut self, index: u64) -> Result<TensorInfo, GgufError> {
        let name = self.string(&format!("tensor[{index}].name"))?;
        let field = |what: &str| format!("tensor {name:?} {what}");
        let n_dims = self.u32(&field("n_dims"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            self.pos -= 4;
            return Err(self.fail(
                &field("n_dims"),
                format!("{n_dims} dimensions (ggml allows 1 to {MAX_DIMS})"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        let mut elements: u64 = 1;
        for d in 0..n_dims {
            let dim = self.u64(&field(&format!("dim[{d}]")))?;
            elements = elements
                .checked_mul(dim)
                .filter(|_| dim > 0)
                .ok_or_else(|| {
                    self.fail(
                        &field(&format!("dim[{d}]")),
                        format!("dimension {dim} is zero or overflows"),
                    )
                })?;
            dims.push(dim);
        }
        let type_at = self.pos;
        let ggml_type = GgmlType(self.u32(&field("type"))?);
        if ggml_type.block_size() == 0 {
            return Err(GgufError {
                path: None,
                offset: type_at,
                field: field("type"),
                reason: format!("unknown ggml type {}", ggml_type.0),
            });
        }
        if dims[0] % ggml_type.block_size() != 0 {
            return Err(GgufError {
                path: None,
                offset: type_at,
                field: field("type"),
                reason: format!(
                    "row length {} is not a multiple of {}'s block size {}",
                    dims[0],
                    ggml_type.name(),
                    ggml_type.block_size()
                ),
            });
        }
        // The element count fits in a u64 (checked above), but the byte size may not: 2^62 F32
        // elements are 2^64 bytes. `TensorInfo::bytes` relies on this check.
        let rows: u64 = dims[1..].iter().product();
        if ggml_type
            .row_bytes(dims[0])
            .and_then(|row| row.checked_mul(rows))
            .is_none()
        {
            return Err(GgufError {
                path: None,
                offset: type_at,
                field: field("type"),
                reason: format!(
                    "{elements} elements of {} take 2^64 bytes or more",
                    ggml_type.name()
                ),
            });
        }
        let offset = self.u64(&field("offset"))?;
        Ok(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        })
    }
}

/// Every tensor's data must lie inside the file (when the file length is known).
fn check_tensor_extents(file: &GgufFile) -> Result<(), GgufError> {
    for tensor in &file.tensors {
        let end = file
            .data_offset
            .checked_add(tensor.offset)
            .and_then(|start| start.checked_add(tensor.bytes()));
        if end.is_none_or(|end| end > file.file_size) {
            return Err(GgufError {
                path: None,
                offset: file.data_offset.saturating_add(tensor.offset),
                field: format!("tensor {:?} data", tensor.name),
                reason: format!(
                    "{} bytes of data run past the end of the file ({} bytes)",
                    tensor.bytes(),
                    file.file_size
                ),
            });
        }
    }
    Ok(())
}

/// A minimal GGUF writer for tests and synthetic files: little- or big-endian, version 3.
pub mod write {
    use super::{GgmlType, Value};

    pub struct Writer {
        pub big_endian: bool,
        pub buf: Vec<u8>,
    }

    impl Writer {
        pub fn new(big_endian: bool) -> Self {
            Writer {
                big_endian,
                buf: Vec::new(),
            }
        }

        pub fn u32(&mut self, v: u32) {
            let b = if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            self.buf.extend_from_slice(&b);
        }

        pub fn u64(&mut self, v: u64) {
            let b = if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            self.buf.extend_from_slice(&b);
        }

        pub fn string(&mut self, s: &str) {
            self.u64(s.len() as u64);
            self.buf.extend_from_slice(s.as_bytes());
        }

        pub fn type_id(value: &Value) -> u32 {
            match value {
                Value::U8(_) => 0,
                Value::I8(_) => 1,
                Value::U16(_) => 2,
                Value::I16(_) => 3,
                Value::U32(_) => 4,
                Value::I32(_) => 5,
                Value::F32(_) => 6,
                Value::Bool(_) => 7,
                Value::String(_) => 8,
                Value::Array(_) => 9,
                Value::U64(_) => 10,
                Value::I64(_) => 11,
                Value::F64(_) => 12,
            }
        }

        pub fn value(&mut self, value: &Value) {
            match value {
                Value::U8(v) => self.buf.push(*v),
                Value::I8(v) => self.buf.push(*v as u8),
                Value::U16(v) => self.buf.extend_from_slice(&if self.big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                }),
                Value::I16(v) => self.buf.extend_from_slice(&if self.big_endian {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                }),
                Value::U32(v) => self.u32(*v),
                Value::I32(v) => self.u32(*v as u32),
                Value::F32(v) => self.u32(v.to_bits()),
                Value::Bool(v) => self.buf.push(u8::from(*v)),
                Value::String(s) => self.string(s),
                Value::Array(items) => {
                    let item_type = items.first().map(Self::type_id).unwrap_or(4);
                    self.u32(item_type);
                    self.u64(items.len() as u64);
                    for item in items {
                        self.value(item);
                    }
                }
                Value::U64(v) => self.u64(*v),
                Value::I64(v) => self.u64(*v as u64),
                Value::F64(v) => self.u64(v.to_bits()),
            }
        }

        /// A whole file: header, metadata, tensor infos, padding and zeroed data.
        pub fn file(
            big_endian: bool,
            metadata: &[(&str, Value)],
            tensors: &[(&str, Vec<u64>, GgmlType)],
        ) -> Vec<u8> {
            let mut w = Writer::new(big_endian);
            w.buf.extend_from_slice(b"GGUF");
            w.u32(3);
            w.u64(tensors.len() as u64);
            w.u64(metadata.len() as u64);
            for (key, value) in metadata {
                w.string(key);
                w.u32(Self::type_id(value));
                w.value(value);
            }
            let mut offset = 0u64;
            let mut sizes = Vec::new();
            for (name, dims, ty) in tensors {
                w.string(name);
                w.u32(dims.len() as u32);
                for d in dims {
                    w.u64(*d);
                }
                w.u32(ty.0);
                w.u64(offset);
                let rows: u64 = dims.iter().skip(1).product();
                let bytes = ty.row_bytes(dims[0]).unwrap_or(0) * rows;
                sizes.push(bytes);
                offset += bytes.div_ceil(32) * 32;
            }
            let data_start = w.buf.len().div_ceil(32) * 32;
            w.buf.resize(data_start + offset as usize, 0);
            w.buf
        }
    }
}

/// llama.cpp's `llama_ftype` names (`general.file_type`), by number.
pub const FILE_TYPES: [(u64, &str); 33] = [
    (0, "F32"),
    (1, "F16"),
    (2, "Q4_0"),
    (3, "Q4_1"),
    (7, "Q8_0"),
    (8, "Q5_0"),
    (9, "Q5_1"),
    (10, "Q2_K"),
    (11, "Q3_K_S"),
    (12, "Q3_K_M"),
    (13, "Q3_K_L"),
    (14, "Q4_K_S"),
    (15, "Q4_K_M"),
    (16, "Q5_K_S"),
    (17, "Q5_K_M"),
    (18, "Q6_K"),
    (19, "IQ2_XXS"),
    (20, "IQ2_XS"),
    (21, "Q2_K_S"),
    (22, "IQ3_XS"),
    (23, "IQ3_XXS"),
    (24, "IQ1_S"),
    (25, "IQ4_NL"),
    (26, "IQ3_S"),
    (27, "IQ3_M"),
    (28, "IQ2_S"),
    (29, "IQ2_M"),
    (30, "IQ4_XS"),
    (31, "IQ1_M"),
    (32, "BF16"),
    (36, "TQ1_0"),
    (37, "TQ2_0"),
    (38, "MXFP4_MOE"),
];

/// The quant name users write for a `general.file_type` (`15` → `Q4_K_M`).
pub fn file_type_name(file_type: u64) -> Option<&'static str> {
    FILE_TYPES
        .iter()
        .find(|(id, _)| *id == file_type)
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::write::Writer;
    use super::*;

    fn sample(big_endian: bool) -> Vec<u8> {
        Writer::file(
            big_endian,
            &[
                ("general.architecture", Value::String("llama".into())),
                ("llama.block_count", Value::U32(2)),
                ("llama.rope.freq_base", Value::F32(10000.0)),
                ("flag", Value::Bool(true)),
                ("i8", Value::I8(-3)),
                ("i16", Value::I16(-300)),
                ("u16", Value::U16(300)),
                ("i64", Value::I64(-5)),
                ("f64", Value::F64(0.25)),
                ("u8", Value::U8(7)),
                (
                    "nested",
                    Value::Array(vec![
                        Value::Array(vec![Value::I32(1), Value::I32(-2)]),
                        Value::Array(vec![]),
                    ]),
                ),
                (
                    "tokens",
                    Value::Array(vec![
                        Value::String("<s>".into()),
                        Value::String("日本".into()),
                    ]),
                ),
            ],
            &[
                ("tok_embd.weight", vec![64, 10], GgmlType(12 - 4)),
                ("output.weight", vec![256, 3], GgmlType(12)),
            ],
        )
    }

    #[test]
    fn reads_both_byte_orders_identically() {
        for big_endian in [false, true] {
            let bytes = sample(big_endian);
            let file = GgufFile::read(&bytes[..], bytes.len() as u64).unwrap();
            assert_eq!(file.big_endian, big_endian);
            assert_eq!(file.version, 3);
            assert_eq!(file.architecture(), Some("llama"));
            assert_eq!(file.get_u64("llama.block_count"), Some(2));
            assert_eq!(file.get("i16"), Some(&Value::I16(-300)));
            assert_eq!(file.get("f64"), Some(&Value::F64(0.25)));
            let nested = file.get("nested").and_then(Value::as_array).unwrap();
            assert_eq!(nested[0], Value::Array(vec![Value::I32(1), Value::I32(-2)]));
            assert_eq!(file.tensors.len(), 2);
            // Q8_0: 64 elements = 2 blocks of 34 bytes, × 10 rows.
            assert_eq!(file.tensors[0].bytes(), 680);
            // Q4_K: 256 elements = 1 block of 144 bytes, × 3 rows.
            assert_eq!(file.tensors[1].bytes(), 432);
        }
    }

    #[test]
    fn every_truncation_is_an_error_naming_an_offset() {
        let bytes = sample(false);
        let whole = GgufFile::read(&bytes[..], bytes.len() as u64).unwrap();
        let last = whole.tensors.last().unwrap();
        // Past this the file only loses alignment padding, which is fine.
        let needed = (whole.data_offset + last.offset + last.bytes()) as usize;
        for cut in 0..needed {
            let err = GgufFile::read(&bytes[..cut], cut as u64).unwrap_err();
            // Only the tensor-extent check may point past the end: at the data that is missing.
            assert!(
                err.offset <= cut as u64 || err.field.ends_with(" data"),
                "cut {cut}: {err}"
            );
            assert!(!err.field.is_empty());
        }
    }

    #[test]
    fn hostile_counts_are_refused_without_allocating() {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = GgufFile::read(&bytes[..], bytes.len() as u64).unwrap_err();
        assert_eq!(err.offset, 16);
        assert_eq!(err.field, "metadata_kv_count");
    }

    #[test]
    fn not_gguf_says_so() {
        let err = GgufFile::read(&b"PK\x03\x04rest-of-a-zip"[..], 18).unwrap_err();
        assert_eq!((err.offset, err.field.as_str()), (0, "magic"));
    }

    #[test]
    fn type_sizes_match_ggml() {
        let q4k = GgmlType::from_name("q4_k").unwrap();
        assert_eq!(q4k.row_bytes(4096), Some(16 * 144));
        assert_eq!(
            GgmlType::from_name("iq4_nl").unwrap().row_bytes(64),
            Some(36)
        );
        assert_eq!(
            GgmlType::from_name("mxfp4").unwrap().row_bytes(64),
            Some(34)
        );
        assert_eq!(GgmlType::from_name("f16").unwrap().row_bytes(3), Some(6));
        assert_eq!(q4k.row_bytes(100), None);
    }
}
