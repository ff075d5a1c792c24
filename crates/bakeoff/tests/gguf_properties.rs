//! Property tests of the parsers of untrusted bytes: the GGUF reader must never panic, never
//! allocate from a count it has not checked, point its errors inside the input, and read back
//! exactly what `gguf::write::Writer` wrote, in both byte orders. `sse::parse_line` must never
//! panic.
//!
//! A counting global allocator records the largest single allocation made on the reading thread,
//! so "never allocates absurdly" is checked, not assumed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bakeoff::formats::gguf::write::Writer;
use bakeoff::formats::gguf::{GgmlType, GgufError, GgufFile, Value};
use bakeoff::formats::sse::{parse_line, SseLine};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------------------------
// Allocation tracking
// ---------------------------------------------------------------------------------------------

struct Tracking;

thread_local! {
    /// Largest single allocation (bytes) on this thread since the last `reset`.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with`: the slot may be gone while a thread is being torn down.
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Read `bytes` as a whole file, returning the result and the largest single allocation made.
fn read_tracked(bytes: &[u8]) -> (Result<GgufFile, GgufError>, usize) {
    LARGEST.with(|largest| largest.set(0));
    let result = GgufFile::read(bytes, bytes.len() as u64);
    (result, LARGEST.with(Cell::get))
}

/// The reader's invariants on any input: errors are well-formed and point inside the input
/// (except tensor-extent errors, which point at the missing data); a success describes tensors
/// whose data lies inside the file; no single allocation is far larger than the input.
fn check_any_input(bytes: &[u8]) -> Result<(), TestCaseError> {
    let len = bytes.len() as u64;
    let (result, largest) = read_tracked(bytes);
    // The biggest pre-sized buffer is a `Vec<Value>` of 1-byte items: 32 bytes of `Value` per
    // input byte. Anything well past that means a count was trusted without a check.
    let bound = 64 * bytes.len() + 64 * 1024;
    prop_assert!(
        largest <= bound,
        "allocated {largest} bytes at once for a {len}-byte input (bound {bound})"
    );
    match result {
        Err(err) => {
            prop_assert!(!err.field.is_empty(), "empty field: {err:?}");
            prop_assert!(err.path.is_none());
            prop_assert!(
                err.offset <= len || err.field.ends_with(" data"),
                "offset {} past the end of a {len}-byte input: {err}",
                err.offset
            );
            // Display must not panic either.
            let _ = err.to_string();
        }
        Ok(file) => {
            prop_assert_eq!(file.file_size, len);
            prop_assert!(matches!(file.version, 2 | 3));
            prop_assert!(file.alignment.is_power_of_two());
            prop_assert!(file.data_offset % file.alignment == 0);
            for tensor in &file.tensors {
                prop_assert!((1..=4).contains(&tensor.dims.len()));
                let end = file
                    .data_offset
                    .checked_add(tensor.offset)
                    .and_then(|start| start.checked_add(tensor.bytes()));
                prop_assert!(
                    end.is_some_and(|end| end <= len),
                    "tensor {:?} data ends past the file",
                    tensor.name
                );
            }
            for (_, value) in &file.metadata {
                let _ = value.summary();
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

fn finite_f32() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("finite (NaN != NaN)", |v| v.is_finite())
}

fn finite_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite (NaN != NaN)", |v| v.is_finite())
}

/// Strings: plain ASCII keys, arbitrary printable Unicode, and a few fixed multi-byte ones.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_.]{0,24}",
        "\\PC{0,16}",
        prop::sample::select(vec![
            "日本語",
            "é",
            "🦀 tokens",
            "<|im_start|>",
            "Ω≈ç√∫",
            ""
        ])
        .prop_map(str::to_string),
    ]
}

/// Number of scalar (non-array) metadata kinds: `scalar(kind)` for `kind < SCALAR_KINDS`.
const SCALAR_KINDS: u8 = 12;

fn scalar(kind: u8) -> BoxedStrategy<Value> {
    match kind {
        0 => any::<u8>().prop_map(Value::U8).boxed(),
        1 => any::<i8>().prop_map(Value::I8).boxed(),
        2 => any::<u16>().prop_map(Value::U16).boxed(),
        3 => any::<i16>().prop_map(Value::I16).boxed(),
        4 => any::<u32>().prop_map(Value::U32).boxed(),
        5 => any::<i32>().prop_map(Value::I32).boxed(),
        6 => any::<u64>().prop_map(Value::U64).boxed(),
        7 => any::<i64>().prop_map(Value::I64).boxed(),
        8 => finite_f32().prop_map(Value::F32).boxed(),
        9 => finite_f64().prop_map(Value::F64).boxed(),
        10 => any::<bool>().prop_map(Value::Bool).boxed(),
        _ => text().prop_map(Value::String).boxed(),
    }
}

fn any_scalar() -> impl Strategy<Value = Value> {
    (0..SCALAR_KINDS).prop_flat_map(scalar)
}

/// An array of scalars, all of one kind (GGUF arrays are homogeneous).
fn flat_array() -> impl Strategy<Value = Value> {
    (0..SCALAR_KINDS).prop_flat_map(|kind| vec(scalar(kind), 0..6).prop_map(Value::Array))
}

/// Any value: scalars, arrays of scalars, and arrays of arrays (depth 2; each inner array has its
/// own item kind).
fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => any_scalar(),
        2 => flat_array(),
        1 => vec(flat_array(), 0..4).prop_map(Value::Array),
    ]
}

const TYPES: &[&str] = &["F32", "F16", "Q8_0", "Q4_K", "IQ4_NL", "MXFP4", "BF16"];

/// A tensor: name, 1 to 4 small dimensions whose first is a whole number of blocks, and a type.
fn tensor() -> impl Strategy<Value = (String, Vec<u64>, GgmlType)> {
    let ty = prop::sample::select(TYPES).prop_map(|name| GgmlType::from_name(name).unwrap());
    (text(), ty, 1u64..=4, vec(1u64..=4, 0..=3)).prop_map(|(name, ty, blocks, rest)| {
        let mut dims = vec![blocks * ty.block_size()];
        dims.extend(rest);
        (name, dims, ty)
    })
}

type Metadata = Vec<(String, Value)>;
type Tensors = Vec<(String, Vec<u64>, GgmlType)>;

fn contents() -> impl Strategy<Value = (Metadata, Tensors)> {
    // `general.alignment` changes where the data starts; the writer always aligns to 32.
    let key = text().prop_filter("not general.alignment", |k| k != "general.alignment");
    (vec((key, value()), 0..8), vec(tensor(), 0..5))
}

fn write_file(big_endian: bool, metadata: &Metadata, tensors: &Tensors) -> Vec<u8> {
    let metadata: Vec<(&str, Value)> = metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let tensors: Vec<(&str, Vec<u64>, GgmlType)> = tensors
        .iter()
        .map(|(n, d, t)| (n.as_str(), d.clone(), *t))
        .collect();
    Writer::file(big_endian, &metadata, &tensors)
}

/// Arbitrary bytes, sometimes behind a valid header (version 2 or 3, either byte order), and
/// sometimes behind small counts too, so the parser gets past the header.
fn arbitrary_input() -> impl Strategy<Value = Vec<u8>> {
    let header = (any::<bool>(), 2u32..=3).prop_map(|(big_endian, version)| {
        let mut w = Writer::new(big_endian);
        w.buf.extend_from_slice(b"GGUF");
        w.u32(version);
        w.buf
    });
    let header_and_counts = (any::<bool>(), 2u32..=3, 0u64..4, 0u64..4).prop_map(
        |(big_endian, version, tensors, kvs)| {
            let mut w = Writer::new(big_endian);
            w.buf.extend_from_slice(b"GGUF");
            w.u32(version);
            w.u64(tensors);
            w.u64(kvs);
            w.buf
        },
    );
    let prefix = prop_oneof![Just(Vec::new()), header, header_and_counts];
    (prefix, vec(any::<u8>(), 0..4096)).prop_map(|(mut prefix, rest)| {
        prefix.extend(rest);
        prefix
    })
}

/// One damaging edit to a valid file.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    Overwrite(Index, u8),
    /// Eight bytes of a value that is hostile as a count, dimension or offset.
    Splat(Index, [u8; 8]),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let hostile = prop::sample::select(vec![
        0u64,
        1,
        u64::MAX,
        u64::MAX / 2,
        1 << 32,
        1 << 40,
        1 << 62,
        1 << 63,
        (1 << 61) + 32,
    ]);
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Overwrite(at, byte)),
        (any::<Index>(), hostile, any::<bool>()).prop_map(|(at, v, be)| {
            Mutation::Splat(at, if be { v.to_be_bytes() } else { v.to_le_bytes() })
        }),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match mutation {
        Mutation::FlipBit(at, bit) => bytes[at.index(len)] ^= 1 << bit,
        Mutation::Overwrite(at, byte) => bytes[at.index(len)] = *byte,
        Mutation::Splat(at, value) => {
            let start = at.index(len);
            let end = (start + value.len()).min(len);
            bytes[start..end].copy_from_slice(&value[..end - start]);
        }
        Mutation::Truncate(at) => bytes.truncate(at.index(len)),
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// 256 cases a property (a fraction of a second); set `PROPTEST_CASES` for a longer search.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    ProptestConfig::with_cases(cases)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in arbitrary_input()) {
        check_any_input(&bytes)?;
    }

    #[test]
    fn written_files_read_back_equal(
        (metadata, tensors) in contents(),
        big_endian in any::<bool>(),
    ) {
        let bytes = write_file(big_endian, &metadata, &tensors);
        let (result, _) = read_tracked(&bytes);
        let file = result.map_err(|e| TestCaseError::fail(format!("valid file refused: {e}")))?;
        prop_assert_eq!(file.version, 3);
        prop_assert_eq!(file.big_endian, big_endian);
        prop_assert_eq!(file.alignment, 32);
        prop_assert_eq!(file.file_size, bytes.len() as u64);
        prop_assert_eq!(&file.metadata, &metadata);
        prop_assert_eq!(file.tensors.len(), tensors.len());
        for (read, (name, dims, ty)) in file.tensors.iter().zip(&tensors) {
            prop_assert_eq!(&read.name, name);
            prop_assert_eq!(&read.dims, dims);
            prop_assert_eq!(read.ggml_type, *ty);
            let rows: u64 = dims[1..].iter().product();
            prop_assert_eq!(read.bytes(), ty.row_bytes(dims[0]).unwrap() * rows);
            prop_assert_eq!(read.elements(), dims.iter().product::<u64>());
            prop_assert!(read.offset % 32 == 0);
            prop_assert!(file.data_offset + read.offset + read.bytes() <= bytes.len() as u64);
        }
        // The other byte order reads back the same contents.
        let other = write_file(!big_endian, &metadata, &tensors);
        let other = GgufFile::read(&other[..], other.len() as u64)
            .map_err(|e| TestCaseError::fail(format!("valid file refused: {e}")))?;
        prop_assert_eq!(other.big_endian, !big_endian);
        prop_assert_eq!(&other.metadata, &file.metadata);
        prop_assert_eq!(&other.tensors, &file.tensors);
    }

    #[test]
    fn damaged_files_never_panic(
        (metadata, tensors) in contents(),
        big_endian in any::<bool>(),
        mutations in vec(mutation(), 1..4),
    ) {
        let mut bytes = write_file(big_endian, &metadata, &tensors);
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check_any_input(&bytes)?;
    }

    #[test]
    fn every_truncation_of_a_valid_file_is_handled(
        (metadata, tensors) in contents(),
        big_endian in any::<bool>(),
        cut in any::<Index>(),
    ) {
        let bytes = write_file(big_endian, &metadata, &tensors);
        let cut = cut.index(bytes.len() + 1);
        check_any_input(&bytes[..cut])?;
    }

    #[test]
    fn sse_lines_never_panic(
        prefix in prop::sample::select(vec!["", "data:", "data: ", "error:", "error:  ", ": ", "event: "]),
        body in prop_oneof![any::<String>(), Just("[DONE]".to_string()), "\\PC{0,40}"],
        ending in prop::sample::select(vec!["", "\n", "\r\n", "\r", "\n\r\n"]),
    ) {
        let line = format!("{prefix}{body}{ending}");
        match parse_line(&line) {
            SseLine::Data(payload) | SseLine::Error(payload) => {
                prop_assert!(line.contains(payload));
                prop_assert!(!payload.starts_with(char::is_whitespace));
                prop_assert!(!payload.ends_with(['\r', '\n']));
            }
            SseLine::Done => prop_assert!(line.starts_with("data:")),
            SseLine::Ignored => {
                prop_assert!(!line.starts_with("data:") && !line.starts_with("error:"));
            }
        }
    }

    #[test]
    fn sse_arbitrary_strings_never_panic(line in any::<String>()) {
        let _ = parse_line(&line);
    }
}

/// A dimension that fits in the element count can still overflow the byte size: `2^62` F32
/// elements are `2^64` bytes. The reader must refuse it, not overflow computing `bytes()`.
#[test]
fn byte_size_overflow_is_an_error() {
    for (dims, ty) in [
        (vec![1u64 << 62], "F32"),
        (vec![1 << 61, 2], "F64"),
        (vec![32, 1 << 59], "Q8_0"),
    ] {
        let mut w = Writer::new(false);
        w.buf.extend_from_slice(b"GGUF");
        w.u32(3);
        w.u64(1); // tensors
        w.u64(0); // metadata
        w.string("t");
        w.u32(dims.len() as u32);
        for d in &dims {
            w.u64(*d);
        }
        w.u32(GgmlType::from_name(ty).unwrap().0);
        w.u64(0); // data offset
        w.buf.resize(w.buf.len() + 64, 0);
        check_any_input(&w.buf).unwrap();
        assert!(GgufFile::read(&w.buf[..], w.buf.len() as u64).is_err());
    }
}
