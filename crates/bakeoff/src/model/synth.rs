//! Random-weight GGUF files of a real model's shape, for measuring engines without downloading
//! weights: either the shape of an existing GGUF (`Like`) or a llama-architecture shape given by
//! its dimensions (`Llama`), with a real vocabulary copied from a GGUF so tokenizers work.
//!
//! The file is streamed to disk (an 8B model is ~16 GB in F16; no tensor is ever held in memory)
//! as GGUF v3, little-endian, into `<out>.gguf.part`, which is renamed to `out` only when complete.
//! Matrices can also be written straight as Q8_0 or Q4_K blocks of random codes: a 70B shape is
//! ~40 GB in Q4_K where its F16 file (~140 GB) would not fit the disk it is quantized on.

use crate::domain::rng::Rng;
use crate::formats::gguf::{write::Writer, GgmlType, GgufFile, Value};
use crate::{Error, Result};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

const F32: GgmlType = GgmlType(0);
const F16: GgmlType = GgmlType(1);
const Q8_0: GgmlType = GgmlType(8);
const Q4_K: GgmlType = GgmlType(12);
/// GGUF's alignment when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// Weights are uniform in [-WEIGHT_RANGE, WEIGHT_RANGE].
const WEIGHT_RANGE: f64 = 0.02;
/// Elements generated per chunk before it is handed to the writer.
const CHUNK_ELEMENTS: u64 = 1 << 18;
const WRITE_BUFFER_BYTES: usize = 8 << 20;
const PROGRESS_EVERY_BYTES: u64 = 64 << 20;

/// Which model shape to synthesise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SynthShape {
    /// Every metadata key and tensor shape of this GGUF file.
    Like(PathBuf),
    /// A llama-architecture model of these dimensions, with the tokenizer of `vocab_from`.
    Llama {
        layers: u64,
        embd: u64,
        heads: u64,
        kv_heads: u64,
        ff: u64,
        vocab_from: PathBuf,
        context: u64,
    },
}

#[derive(Debug, Clone)]
pub struct SynthSpec {
    pub shape: SynthShape,
    pub out: PathBuf,
    /// Type of the written matrices: F16, F32, Q8_0 or Q4_K (1-D tensors are always F32; a
    /// matrix whose rows are not whole blocks of a quantized type is written F16).
    pub dtype: GgmlType,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SynthReport {
    pub out: PathBuf,
    pub tensors: usize,
    pub parameters: u64,
    /// Size of the written file.
    pub bytes: u64,
    pub architecture: String,
}

/// How a tensor's values are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// 1.0 everywhere: norm weights (and rope frequency factors), so activations keep their scale.
    Ones,
    /// Uniform in [-0.02, 0.02].
    Random,
}

struct PlannedTensor {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    fill: Fill,
}

impl PlannedTensor {
    fn new(name: impl Into<String>, dims: Vec<u64>, ggml_type: GgmlType) -> Self {
        let name = name.into();
        let fill = fill_for(&name);
        PlannedTensor {
            name,
            dims,
            ggml_type,
            fill,
        }
    }
}

/// Everything but the tensor data.
struct Plan {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PlannedTensor>,
    alignment: u64,
    architecture: String,
}

fn fill_for(name: &str) -> Fill {
    if name.contains("norm") || name.starts_with("rope_freqs") {
        Fill::Ones
    } else {
        Fill::Random
    }
}

/// Write a random-weight GGUF as `spec` describes. `progress(bytes_written, total_bytes)` is called
/// at the start, about every 64 MiB, and at the end.
pub fn synth(spec: &SynthSpec, progress: &mut dyn FnMut(u64, u64)) -> Result<SynthReport> {
    if ![F16, F32, Q8_0, Q4_K].contains(&spec.dtype) {
        return Err(Error::input(format!(
            "synthetic weights are written as F16, F32, Q8_0 or Q4_K, not {}",
            spec.dtype.name()
        ))
        .with_hint("synthesise F16, then quantize with llama-quantize"));
    }
    let plan = match &spec.shape {
        SynthShape::Like(source) => {
            refuse_overwrite(&spec.out, source)?;
            plan_like(source, spec.dtype)?
        }
        SynthShape::Llama {
            layers,
            embd,
            heads,
            kv_heads,
            ff,
            vocab_from,
            context,
        } => {
            refuse_overwrite(&spec.out, vocab_from)?;
            let dims = LlamaDims {
                layers: *layers,
                embd: *embd,
                heads: *heads,
                kv_heads: *kv_heads,
                ff: *ff,
                context: *context,
            };
            plan_llama(&dims, vocab_from, spec.dtype)?
        }
    };
    let bytes = write_plan(&plan, &spec.out, spec.seed, progress)?;
    let mut parameters = 0u64;
    for t in &plan.tensors {
        parameters = parameters.saturating_add(t.dims.iter().product::<u64>());
    }
    Ok(SynthReport {
        out: spec.out.clone(),
        tensors: plan.tensors.len(),
        parameters,
        bytes,
        architecture: plan.architecture,
    })
}

/// Renaming over the model we copy from would replace real weights with random ones.
fn refuse_overwrite(out: &Path, source: &Path) -> Result<()> {
    if let (Ok(a), Ok(b)) = (out.canonicalize(), source.canonicalize()) {
        if a == b {
            return Err(Error::input(format!(
                "{}: the output would replace the model it is copied from",
                out.display()
            ))
            .with_hint("choose another output path"));
        }
    }
    Ok(())
}

fn file_type(dtype: GgmlType) -> Value {
    // llama_ftype: 0 = ALL_F32, 1 = MOSTLY_F16, 7 = MOSTLY_Q8_0, 14 = MOSTLY_Q4_K_S (every
    // matrix Q4_K, where Q4_K_M would keep some in Q6_K).
    Value::U32(match dtype {
        F16 => 1,
        Q8_0 => 7,
        Q4_K => 14,
        _ => 0,
    })
}

/// The type matrix `name` of `dims` is written in: `dtype`; or F16 where its rows are not whole
/// blocks of `dtype` (as llama-quantize falls back for such tensors), or where it must hold ones
/// (random quantized codes cannot).
fn matrix_type(name: &str, dims: &[u64], dtype: GgmlType) -> GgmlType {
    let quantized = dtype != F16 && dtype != F32;
    if quantized && (dims[0] % dtype.block_size() != 0 || fill_for(name) == Fill::Ones) {
        F16
    } else {
        dtype
    }
}

/// Replace `key`'s value in place, or append it.
fn set(metadata: &mut Vec<(String, Value)>, key: &str, value: Value) {
    match metadata.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => metadata.push((key.to_string(), value)),
    }
}

fn plan_like(source: &Path, dtype: GgmlType) -> Result<Plan> {
    let file = GgufFile::open(source)?;
    let architecture = file
        .architecture()
        .ok_or_else(|| {
            Error::input(format!(
                "{}: no general.architecture; llama.cpp could not load a copy of it",
                source.display()
            ))
        })?
        .to_string();
    if let Some(n) = file.get_u64("split.count").filter(|&n| n > 1) {
        return Err(Error::input(format!(
            "{}: one shard of a model split into {n} files; its copy would lack the other shards' tensors",
            source.display()
        ))
        .with_hint("merge the shards first (llama-gguf-split --merge)"));
    }
    if file.tensors.is_empty() {
        return Err(Error::input(format!(
            "{}: has no tensors to copy the shapes of",
            source.display()
        )));
    }
    let original = match file.get_str("general.name") {
        Some(name) => name.to_string(),
        None => source
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| architecture.clone()),
    };
    let mut metadata = file.metadata.clone();
    set(&mut metadata, "general.file_type", file_type(dtype));
    set(
        &mut metadata,
        "general.name",
        Value::String(format!("{original} (synthetic random weights)")),
    );
    // A matrix a quantized or F16 file keeps in F32 is one llama.cpp needs in F32 (SSM state
    // matrices, convolution kernels), so it stays F32.
    let kept_f32 = file
        .tensors
        .iter()
        .any(|t| !is_vector(&t.dims) && t.ggml_type != F32);
    let tensors = file
        .tensors
        .iter()
        .map(|t| {
            let ggml_type = if is_vector(&t.dims) || (kept_f32 && t.ggml_type == F32) {
                F32
            } else {
                matrix_type(&t.name, &t.dims, dtype)
            };
            PlannedTensor::new(t.name.clone(), t.dims.clone(), ggml_type)
        })
        .collect();
    Ok(Plan {
        metadata,
        tensors,
        alignment: file.alignment,
        architecture,
    })
}

/// 1-D, ignoring trailing dimensions of 1.
fn is_vector(dims: &[u64]) -> bool {
    dims.iter().skip(1).all(|&d| d == 1)
}

struct LlamaDims {
    layers: u64,
    embd: u64,
    heads: u64,
    kv_heads: u64,
    ff: u64,
    context: u64,
}

fn as_u32(field: &str, value: u64) -> Result<Value> {
    u32::try_from(value)
        .map(Value::U32)
        .map_err(|_| Error::input(format!("{field} = {value} does not fit in 32 bits")))
}

fn plan_llama(d: &LlamaDims, vocab_from: &Path, dtype: GgmlType) -> Result<Plan> {
    for (field, value) in [
        ("layers", d.layers),
        ("embd", d.embd),
        ("heads", d.heads),
        ("kv_heads", d.kv_heads),
        ("ff", d.ff),
        ("context", d.context),
    ] {
        if value == 0 {
            return Err(Error::input(format!("{field} must be greater than 0")));
        }
    }
    if d.embd % d.heads != 0 {
        return Err(Error::input(format!(
            "embd ({}) must be a multiple of heads ({})",
            d.embd, d.heads
        )));
    }
    if d.heads % d.kv_heads != 0 {
        return Err(Error::input(format!(
            "heads ({}) must be a multiple of kv_heads ({})",
            d.heads, d.kv_heads
        )));
    }
    let head_dim = d.embd / d.heads;
    let kv_dim = head_dim * d.kv_heads;

    let vocab_file = GgufFile::open(vocab_from)?;
    let vocab = vocab_file
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .map(<[Value]>::len)
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            Error::input(format!(
                "{}: no tokenizer.ggml.tokens to take the vocabulary from",
                vocab_from.display()
            ))
            .with_hint("vocab_from must be a GGUF model file with an embedded tokenizer")
        })? as u64;

    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        (
            "general.name".into(),
            Value::String("synthetic llama".into()),
        ),
        ("llama.block_count".into(), as_u32("layers", d.layers)?),
        ("llama.context_length".into(), as_u32("context", d.context)?),
        ("llama.embedding_length".into(), as_u32("embd", d.embd)?),
        ("llama.feed_forward_length".into(), as_u32("ff", d.ff)?),
        (
            "llama.attention.head_count".into(),
            as_u32("heads", d.heads)?,
        ),
        (
            "llama.attention.head_count_kv".into(),
            as_u32("kv_heads", d.kv_heads)?,
        ),
        (
            "llama.rope.dimension_count".into(),
            as_u32("embd / heads", head_dim)?,
        ),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(1e-5),
        ),
        ("llama.rope.freq_base".into(), Value::F32(10000.0)),
        ("llama.vocab_size".into(), as_u32("vocab size", vocab)?),
        ("general.file_type".into(), file_type(dtype)),
    ];
    metadata.extend(
        vocab_file
            .metadata
            .into_iter()
            .filter(|(k, _)| k.starts_with("tokenizer.")),
    );

    let embd = d.embd;
    let matrix = |name: String, dims: Vec<u64>| {
        let ggml_type = matrix_type(&name, &dims, dtype);
        PlannedTensor::new(name, dims, ggml_type)
    };
    let mut tensors = vec![
        matrix("token_embd.weight".into(), vec![embd, vocab]),
        PlannedTensor::new("output_norm.weight", vec![embd], F32),
        matrix("output.weight".into(), vec![embd, vocab]),
    ];
    for i in 0..d.layers {
        let blk = |name: &str| format!("blk.{i}.{name}.weight");
        tensors.extend([
            PlannedTensor::new(blk("attn_norm"), vec![embd], F32),
            matrix(blk("attn_q"), vec![embd, embd]),
            matrix(blk("attn_k"), vec![embd, kv_dim]),
            matrix(blk("attn_v"), vec![embd, kv_dim]),
            matrix(blk("attn_output"), vec![embd, embd]),
            PlannedTensor::new(blk("ffn_norm"), vec![embd], F32),
            matrix(blk("ffn_gate"), vec![embd, d.ff]),
            matrix(blk("ffn_up"), vec![embd, d.ff]),
            matrix(blk("ffn_down"), vec![d.ff, embd]),
        ]);
    }
    Ok(Plan {
        metadata,
        tensors,
        alignment: DEFAULT_ALIGNMENT,
        architecture: "llama".into(),
    })
}

fn too_large(name: &str) -> Error {
    Error::input(format!("tensor {name}: its size overflows 64 bits"))
}

/// Bytes of a tensor's data, unpadded.
fn tensor_bytes(t: &PlannedTensor) -> Result<u64> {
    let rows = t
        .dims
        .iter()
        .skip(1)
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| too_large(&t.name))?;
    t.ggml_type
        .row_bytes(t.dims[0])
        .and_then(|row| row.checked_mul(rows))
        .ok_or_else(|| too_large(&t.name))
}

fn pad_to(n: u64, alignment: u64) -> u64 {
    n.div_ceil(alignment) * alignment
}

/// Header, metadata and tensor infos, padded to the alignment; and each tensor's unpadded size.
fn header(plan: &Plan) -> Result<(Vec<u8>, Vec<u64>)> {
    let mut w = Writer::new(false);
    w.buf.extend_from_slice(b"GGUF");
    w.u32(3);
    w.u64(plan.tensors.len() as u64);
    w.u64(plan.metadata.len() as u64);
    for (key, value) in &plan.metadata {
        w.string(key);
        w.u32(Writer::type_id(value));
        w.value(value);
    }
    let mut offset = 0u64;
    let mut sizes = Vec::with_capacity(plan.tensors.len());
    for t in &plan.tensors {
        w.string(&t.name);
        w.u32(t.dims.len() as u32);
        for &d in &t.dims {
            w.u64(d);
        }
        w.u32(t.ggml_type.0);
        w.u64(offset);
        let bytes = tensor_bytes(t)?;
        offset = offset
            .checked_add(pad_to(bytes, plan.alignment))
            .ok_or_else(|| too_large(&t.name))?;
        sizes.push(bytes);
    }
    let data_offset = pad_to(w.buf.len() as u64, plan.alignment);
    w.buf.resize(data_offset as usize, 0);
    Ok((w.buf, sizes))
}

/// Stream the file to `<out>.gguf.part`, then rename it to `out`. Returns the file's size.
fn write_plan(
    plan: &Plan,
    out: &Path,
    seed: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64> {
    let (head, sizes) = header(plan)?;
    let mut total = head.len() as u64;
    for (t, &bytes) in plan.tensors.iter().zip(&sizes) {
        total = total
            .checked_add(pad_to(bytes, plan.alignment))
            .ok_or_else(|| too_large(&t.name))?;
    }
    let part = out.with_extension("gguf.part");
    let written = write_part(plan, &part, &head, &sizes, total, seed, progress)
        .and_then(|()| std::fs::rename(&part, out).map_err(|e| Error::io(out, e)));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    progress(total, total);
    Ok(total)
}

fn write_part(
    plan: &Plan,
    part: &Path,
    head: &[u8],
    sizes: &[u64],
    total: u64,
    seed: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let io = |e| Error::io(part, e);
    let file = File::create(part).map_err(io)?;
    let mut w = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
    w.write_all(head).map_err(io)?;
    let mut written = head.len() as u64;
    let mut next_report = PROGRESS_EVERY_BYTES;
    progress(written, total);
    let mut weights = Weights::new(seed);
    let mut chunk = Vec::new();
    let zeros = vec![0u8; plan.alignment as usize];
    for (t, &bytes) in plan.tensors.iter().zip(sizes) {
        let width = t.ggml_type.block_bytes();
        let mut left = bytes / width;
        while left > 0 {
            let n = left.min(CHUNK_ELEMENTS);
            chunk.resize((n * width) as usize, 0);
            fill(&mut chunk, t.ggml_type, t.fill, &mut weights);
            w.write_all(&chunk).map_err(io)?;
            written += chunk.len() as u64;
            left -= n;
            if written >= next_report {
                progress(written, total);
                next_report = written + PROGRESS_EVERY_BYTES;
            }
        }
        let padding = pad_to(bytes, plan.alignment) - bytes;
        w.write_all(&zeros[..padding as usize]).map_err(io)?;
        written += padding;
    }
    debug_assert_eq!(written, total);
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    // On disk before the rename, so the final name never points at a partial file.
    file.sync_all().map_err(io)
}

/// Encode values into `out` (whose length is a whole number of elements, or blocks, of
/// `ggml_type`). Quantized blocks hold random codes under fixed scales (`quantized_block`).
fn fill(out: &mut [u8], ggml_type: GgmlType, fill: Fill, weights: &mut Weights) {
    if ggml_type == Q8_0 || ggml_type == Q4_K {
        for block in out.chunks_exact_mut(ggml_type.block_bytes() as usize) {
            quantized_block(block, ggml_type, weights);
        }
        return;
    }
    let mut value = || match fill {
        Fill::Ones => 1.0,
        Fill::Random => weights.next(),
    };
    if ggml_type == F16 {
        for e in out.chunks_exact_mut(2) {
            e.copy_from_slice(&f32_to_f16(value()).to_le_bytes());
        }
    } else {
        for e in out.chunks_exact_mut(4) {
            e.copy_from_slice(&value().to_le_bytes());
        }
    }
}

/// One block of random weights in [-0.02, 0.02]: random codes under scales that map the codes'
/// range onto that interval, so the engine runs the type's real kernels on sane values.
/// - Q8_0 (34 bytes, 32 weights): `d` (f16) = 0.02 / 127, then 32 codes in [-127, 127].
/// - Q4_K (144 bytes, 256 weights): weight = d * scale * q - dmin * min, q in 0..=15. `d` =
///   0.04 / 15 and `dmin` = 0.02 (f16 each), all eight 6-bit scales and mins 1 (their packed
///   12 bytes: `1` eight times, then `0x11` four times), then 128 bytes of random nibbles.
fn quantized_block(block: &mut [u8], ggml_type: GgmlType, weights: &mut Weights) {
    if ggml_type == Q8_0 {
        block[..2].copy_from_slice(&f32_to_f16((WEIGHT_RANGE / 127.0) as f32).to_le_bytes());
        weights.bytes(&mut block[2..]);
        for code in &mut block[2..] {
            // -128 (0x80) would reach past the range: -127 (0x81) instead.
            if *code == 0x80 {
                *code = 0x81;
            }
        }
    } else {
        let d = f32_to_f16((2.0 * WEIGHT_RANGE / 15.0) as f32);
        block[..2].copy_from_slice(&d.to_le_bytes());
        block[2..4].copy_from_slice(&f32_to_f16(WEIGHT_RANGE as f32).to_le_bytes());
        block[4..12].fill(1);
        block[12..16].fill(0x11);
        weights.bytes(&mut block[16..]);
    }
}

/// Uniform weights in [-0.02, 0.02] from SplitMix64, two per 64-bit draw.
struct Weights {
    rng: Rng,
    spare: Option<u32>,
}

impl Weights {
    fn new(seed: u64) -> Self {
        Weights {
            rng: Rng::new(seed),
            spare: None,
        }
    }

    fn next(&mut self) -> f32 {
        let bits = match self.spare.take() {
            Some(bits) => bits,
            None => {
                let r = self.rng.next_u64();
                self.spare = Some((r >> 32) as u32);
                r as u32
            }
        };
        // (0, 1), symmetric about 0.5.
        let unit = (f64::from(bits) + 0.5) / 4_294_967_296.0;
        ((unit * 2.0 - 1.0) * WEIGHT_RANGE) as f32
    }

    /// Random bytes, eight per draw.
    fn bytes(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let draw = self.rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&draw[..chunk.len()]);
        }
    }
}

/// Write a tensor-less GGUF holding only `src`'s tokenizer (`tokenizer.*` keys) and its
/// architecture: a few MB that carry a real vocabulary to machines without the weights, for
/// `SynthShape::Llama { vocab_from, .. }`.
pub fn extract_vocab(src: &Path, out: &Path) -> Result<usize> {
    let file = GgufFile::open(src)?;
    let keep: Vec<(&str, Value)> = file
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer.") || k == "general.architecture")
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    if !keep.iter().any(|(k, _)| *k == "tokenizer.ggml.tokens") {
        return Err(Error::input(format!(
            "{}: no tokenizer.ggml.tokens to extract",
            src.display()
        )));
    }
    let bytes = crate::formats::gguf::write::Writer::file(false, &keep, &[]);
    std::fs::write(out, &bytes).map_err(|e| Error::io(out, e))?;
    Ok(bytes.len())
}

/// IEEE 754 binary32 → binary16, rounding to nearest, ties to even; subnormals, overflow to
/// infinity and NaN handled.
pub fn f32_to_f16(value: f32) -> u16 {
    let x = value.to_bits();
    let sign = ((x >> 16) & 0x8000) as u16;
    let exp = ((x >> 23) & 0xff) as i32;
    let mantissa = x & 0x007f_ffff;
    if exp == 0xff {
        // Infinity, or NaN kept quiet with its top payload bits.
        let nan = if mantissa != 0 {
            0x0200 | (mantissa >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    // Exponent rebiased from 127 to 15.
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    let (kept, shift) = if e <= 0 {
        // Subnormal half: value = m × 2^-24, m = (1.mantissa × 2^23) >> (14 - e).
        if e < -10 {
            // Below half the smallest subnormal (2^-25): rounds to zero. (f32 subnormals too.)
            return sign;
        }
        (mantissa | 0x0080_0000, (14 - e) as u32)
    } else {
        ((e as u32) << 23 | mantissa, 13)
    };
    let mut half = kept >> shift;
    let rest = kept & ((1 << shift) - 1);
    let halfway = 1 << (shift - 1);
    if rest > halfway || (rest == halfway && half & 1 == 1) {
        // A carry out of the mantissa moves to the next exponent (or to infinity): still right.
        half += 1;
    }
    sign | half as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// binary16 → f32, exactly (every half is representable as an f32).
    fn f16_to_f32(h: u16) -> f32 {
        let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exp = i32::from((h >> 10) & 0x1f);
        let mantissa = f32::from(h & 0x3ff);
        sign * match exp {
            0 => mantissa * 2f32.powi(-24),
            0x1f if mantissa == 0.0 => f32::INFINITY,
            0x1f => f32::NAN,
            _ => (1.0 + mantissa / 1024.0) * 2f32.powi(exp - 15),
        }
    }

    #[test]
    fn f16_known_bit_patterns() {
        for (value, bits) in [
            (0.0f32, 0x0000u16),
            (-0.0, 0x8000),
            (1.0, 0x3c00),
            (-2.0, 0xc000),
            (0.02, 0x251f),
            (65504.0, 0x7bff),
            (1e-7, 0x0002),
            (6.103_515_6e-5, 0x0400), // smallest normal
            (5.960_464_5e-8, 0x0001), // smallest subnormal
            (2.980_232_2e-8, 0x0000), // exactly half of it: ties to even (0)
            (65520.0, 0x7c00),        // halfway to 2^16: ties to even, overflows
            (1e6, 0x7c00),
            (f32::NEG_INFINITY, 0xfc00),
            (1.0 + 1.0 / 2048.0, 0x3c00), // tie between 0x3c00 and 0x3c01: even
            (1.0 + 3.0 / 2048.0, 0x3c02), // tie between 0x3c01 and 0x3c02: even
        ] {
            assert_eq!(f32_to_f16(value), bits, "{value:e}");
        }
        assert_eq!(f32_to_f16(f32::NAN) & 0x7c00, 0x7c00);
        assert_ne!(f32_to_f16(f32::NAN) & 0x03ff, 0);
    }

    #[test]
    fn f16_rounds_to_nearest_even_everywhere() {
        let mut rng = Rng::new(7);
        for i in 0..200_000u32 {
            // Every f32 exponent from deep subnormal-half territory to overflow, random mantissas.
            let exp = 127 - 30 + (i % 47);
            let bits = (rng.next_u64() as u32 & 0x8000_0000)
                | exp << 23
                | (rng.next_u64() as u32 & 0x7f_ffff);
            let x = f32::from_bits(bits);
            let h = f32_to_f16(x);
            let got = f64::from(f16_to_f32(h));
            let err = (f64::from(x) - got).abs();
            if got.is_infinite() {
                // Only at or beyond the rounding boundary 65520.
                assert!(x.abs() >= 65520.0, "{x:e} -> {h:#06x}");
                continue;
            }
            assert!(x.abs() < 65520.0, "{x:e} -> {h:#06x}");
            for neighbour in [h.wrapping_sub(1), h + 1] {
                if neighbour & 0x7fff >= 0x7c00 || (neighbour ^ h) & 0x8000 != 0 {
                    continue;
                }
                let other = (f64::from(x) - f64::from(f16_to_f32(neighbour))).abs();
                assert!(
                    err < other || (err == other && h & 1 == 0),
                    "{x:e} -> {h:#06x} ({got:e}), but {neighbour:#06x} is nearer"
                );
            }
        }
    }

    fn vocab_source(dir: &Path) -> PathBuf {
        let tokens: Vec<Value> = (0..32).map(|i| Value::String(format!("tok{i}"))).collect();
        let scores: Vec<Value> = (0..32).map(|i| Value::F32(-(i as f32))).collect();
        let types: Vec<Value> = (0..32).map(|_| Value::I32(1)).collect();
        let bytes = Writer::file(
            false,
            &[
                ("general.architecture", Value::String("llama".into())),
                ("general.name", Value::String("tiny source".into())),
                ("general.alignment", Value::U32(64)),
                ("general.file_type", Value::U32(7)),
                ("llama.block_count", Value::U32(1)),
                ("tokenizer.ggml.model", Value::String("llama".into())),
                ("tokenizer.ggml.tokens", Value::Array(tokens)),
                ("tokenizer.ggml.scores", Value::Array(scores)),
                ("tokenizer.ggml.token_type", Value::Array(types)),
                ("tokenizer.ggml.bos_token_id", Value::U32(1)),
            ],
            &[
                (
                    "token_embd.weight",
                    vec![64, 32],
                    GgmlType::from_name("Q8_0").unwrap(),
                ),
                ("output_norm.weight", vec![64], F32),
                ("blk.0.ssm_a", vec![16, 64], F32),
                (
                    "blk.0.ffn_down.weight",
                    vec![256, 64],
                    GgmlType::from_name("Q4_K").unwrap(),
                ),
            ],
        );
        let path = dir.join("source.gguf");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn tiny_llama(vocab_from: &Path) -> SynthShape {
        SynthShape::Llama {
            layers: 2,
            embd: 64,
            heads: 4,
            kv_heads: 2,
            ff: 128,
            vocab_from: vocab_from.to_path_buf(),
            context: 256,
        }
    }

    fn run(shape: SynthShape, out: PathBuf, dtype: GgmlType) -> SynthReport {
        let mut calls = Vec::new();
        let report = synth(
            &SynthSpec {
                shape,
                out,
                dtype,
                seed: 42,
            },
            &mut |done, total| calls.push((done, total)),
        )
        .unwrap();
        assert_eq!(calls.last(), Some(&(report.bytes, report.bytes)));
        report
    }

    /// Every tensor's data, as f32 values.
    fn values(path: &Path, file: &GgufFile, name: &str) -> Vec<f32> {
        let bytes = std::fs::read(path).unwrap();
        let t = file.tensor(name).unwrap();
        let start = (file.data_offset + t.offset) as usize;
        let data = &bytes[start..start + t.bytes() as usize];
        match t.ggml_type {
            F16 => data
                .chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Q8_0 => data
                .chunks_exact(34)
                .flat_map(|b| {
                    let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
                    b[2..].iter().map(move |&q| d * f32::from(q as i8))
                })
                .collect(),
            // Every scale and min is 1 (asserted), so each nibble q stands for d * q - dmin.
            Q4_K => data
                .chunks_exact(144)
                .flat_map(|b| {
                    assert_eq!(&b[4..16], &[1, 1, 1, 1, 1, 1, 1, 1, 0x11, 0x11, 0x11, 0x11]);
                    let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
                    let dmin = f16_to_f32(u16::from_le_bytes([b[2], b[3]]));
                    b[16..]
                        .iter()
                        .flat_map(|&q| [q & 0xF, q >> 4])
                        .map(move |q| d * f32::from(q) - dmin)
                })
                .collect(),
            other => panic!("{name} is {}", other.name()),
        }
    }

    fn padded_sizes(file: &GgufFile) -> u64 {
        file.tensors
            .iter()
            .map(|t| pad_to(t.bytes(), file.alignment))
            .sum()
    }

    #[test]
    fn llama_shape_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let source = vocab_source(dir.path());
        let out = dir.path().join("tiny.gguf");
        let report = run(tiny_llama(&source), out.clone(), F16);
        assert!(!out.with_extension("gguf.part").exists());

        let file = GgufFile::open(&out).unwrap();
        assert_eq!(file.version, 3);
        assert_eq!(file.architecture(), Some("llama"));
        assert_eq!(report.architecture, "llama");
        // token_embd, output_norm, output, then 9 per layer.
        assert_eq!(file.tensors.len(), 3 + 9 * 2);
        assert_eq!(report.tensors, 21);
        assert_eq!(
            file.tensor("blk.0.attn_k.weight").unwrap().dims,
            vec![64, 32]
        );
        assert_eq!(
            file.tensor("blk.1.ffn_down.weight").unwrap().dims,
            vec![128, 64]
        );
        assert_eq!(file.tensor("output.weight").unwrap().bytes(), 64 * 32 * 2);
        assert_eq!(file.tensor("blk.1.ffn_norm.weight").unwrap().ggml_type, F32);
        assert_eq!(file.alignment, 32);
        assert_eq!(file.file_size, file.data_offset + padded_sizes(&file));
        assert_eq!(report.bytes, file.file_size);
        let params: u64 = file.tensors.iter().map(|t| t.elements()).sum();
        assert_eq!(report.parameters, params);

        for (key, value) in [
            ("llama.block_count", 2),
            ("llama.context_length", 256),
            ("llama.embedding_length", 64),
            ("llama.feed_forward_length", 128),
            ("llama.attention.head_count", 4),
            ("llama.attention.head_count_kv", 2),
            ("llama.rope.dimension_count", 16),
            ("llama.vocab_size", 32),
            ("general.file_type", 1),
        ] {
            assert_eq!(file.get(key), Some(&Value::U32(value)), "{key}");
        }
        assert_eq!(
            file.get("llama.attention.layer_norm_rms_epsilon"),
            Some(&Value::F32(1e-5))
        );
        let src = GgufFile::open(&source).unwrap();
        for key in [
            "tokenizer.ggml.model",
            "tokenizer.ggml.tokens",
            "tokenizer.ggml.scores",
            "tokenizer.ggml.token_type",
            "tokenizer.ggml.bos_token_id",
        ] {
            assert_eq!(file.get(key), src.get(key), "{key}");
        }
        assert_eq!(file.get("llama.block_count"), Some(&Value::U32(2)));

        assert!(values(&out, &file, "blk.0.attn_norm.weight")
            .iter()
            .all(|&v| v == 1.0));
        let weights = values(&out, &file, "blk.0.attn_q.weight");
        assert!(weights.iter().all(|v| v.abs() <= 0.0201));
        let mean = weights.iter().sum::<f32>() / weights.len() as f32;
        assert!(mean.abs() < 0.002, "mean {mean}");
        let distinct: std::collections::BTreeSet<u32> =
            weights.iter().map(|v| v.to_bits()).collect();
        assert!(distinct.len() > weights.len() / 4);

        // Same seed, same bytes.
        let again = dir.path().join("again.gguf");
        run(tiny_llama(&source), again.clone(), F16);
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
    }

    /// Q8_0 and Q4_K are written as blocks of random codes whose values stay in the F16
    /// weights' range; a matrix whose rows are not whole blocks is written F16.
    #[test]
    fn quantized_matrices_are_written_as_blocks_in_range() {
        let dir = tempfile::tempdir().unwrap();
        let source = vocab_source(dir.path());
        let shape = SynthShape::Llama {
            layers: 1,
            embd: 256,
            heads: 4,
            kv_heads: 2,
            ff: 512,
            vocab_from: source.clone(),
            context: 256,
        };
        for (dtype, file_type) in [(Q8_0, 7), (Q4_K, 14)] {
            let out = dir.path().join(format!("{}.gguf", dtype.name()));
            let report = run(shape.clone(), out.clone(), dtype);
            let file = GgufFile::open(&out).unwrap();
            assert_eq!(file.get("general.file_type"), Some(&Value::U32(file_type)));
            for t in &file.tensors {
                let want = if is_vector(&t.dims) { F32 } else { dtype };
                assert_eq!(t.ggml_type, want, "{}", t.name);
            }
            assert_eq!(file.file_size, file.data_offset + padded_sizes(&file));
            assert_eq!(report.bytes, file.file_size);
            let weights = values(&out, &file, "blk.0.ffn_down.weight");
            assert_eq!(weights.len(), 512 * 256);
            assert!(
                weights.iter().all(|v| v.abs() <= 0.0201),
                "{} out of range",
                dtype.name()
            );
            let mean = weights.iter().sum::<f32>() / weights.len() as f32;
            assert!(mean.abs() < 0.002, "{} mean {mean}", dtype.name());
            let distinct: std::collections::BTreeSet<u32> =
                weights.iter().map(|v| v.to_bits()).collect();
            assert!(distinct.len() >= 16, "{}", dtype.name());
        }
        // Rows of 64 and 128 are not whole Q4_K blocks (256): F16, as llama-quantize falls back.
        let out = dir.path().join("fallback.gguf");
        run(tiny_llama(&source), out.clone(), Q4_K);
        let file = GgufFile::open(&out).unwrap();
        for t in file.tensors.iter().filter(|t| !is_vector(&t.dims)) {
            assert_eq!(t.ggml_type, F16, "{}", t.name);
        }
        // A 2-D tensor that must hold ones (a norm) cannot be random codes: F16.
        assert_eq!(matrix_type("blk.0.attn_norm.weight", &[256, 2], Q4_K), F16);
        assert_eq!(matrix_type("blk.0.attn_q.weight", &[256, 2], Q4_K), Q4_K);
    }

    #[test]
    fn like_copies_metadata_and_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let source = vocab_source(dir.path());
        let out = dir.path().join("like.gguf");
        let report = run(SynthShape::Like(source.clone()), out.clone(), F16);
        let src = GgufFile::open(&source).unwrap();
        let file = GgufFile::open(&out).unwrap();

        let keys = |f: &GgufFile| {
            f.metadata
                .iter()
                .map(|(k, _)| k.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&file), keys(&src));
        for (key, value) in &src.metadata {
            match key.as_str() {
                "general.file_type" => assert_eq!(file.get(key), Some(&Value::U32(1))),
                "general.name" => assert_eq!(
                    file.get_str(key),
                    Some("tiny source (synthetic random weights)")
                ),
                _ => assert_eq!(file.get(key), Some(value), "{key}"),
            }
        }
        let shapes = |f: &GgufFile| {
            f.tensors
                .iter()
                .map(|t| (t.name.clone(), t.dims.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(shapes(&file), shapes(&src));
        let types: Vec<&str> = file.tensors.iter().map(|t| t.ggml_type.name()).collect();
        // The source keeps blk.0.ssm_a in F32 next to quantized matrices: so does the copy.
        assert_eq!(types, ["F16", "F32", "F32", "F16"]);
        assert_eq!(file.alignment, 64);
        assert_eq!(file.data_offset % 64, 0);
        assert_eq!(file.file_size, file.data_offset + padded_sizes(&file));
        assert_eq!(report.bytes, file.file_size);
        assert_eq!(report.tensors, 4);
        assert_eq!(report.parameters, 64 * 32 + 64 + 16 * 64 + 256 * 64);

        // F32 throughout on request.
        let out32 = dir.path().join("like32.gguf");
        run(SynthShape::Like(source), out32.clone(), F32);
        let file = GgufFile::open(&out32).unwrap();
        assert!(file.tensors.iter().all(|t| t.ggml_type == F32));
        assert_eq!(file.get("general.file_type"), Some(&Value::U32(0)));
    }

    #[test]
    fn bad_shapes_and_types_are_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let source = vocab_source(dir.path());
        let out = dir.path().join("bad.gguf");
        let attempt = |shape: SynthShape, dtype: GgmlType| {
            synth(
                &SynthSpec {
                    shape,
                    out: out.clone(),
                    dtype,
                    seed: 1,
                },
                &mut |_, _| {},
            )
            .unwrap_err()
            .to_string()
        };
        let with = |f: &dyn Fn(&mut SynthShape)| {
            let mut shape = tiny_llama(&source);
            f(&mut shape);
            attempt(shape, F16)
        };
        let set = |field: &'static str, v: u64| {
            move |shape: &mut SynthShape| {
                if let SynthShape::Llama {
                    layers,
                    embd,
                    heads,
                    kv_heads,
                    ff,
                    context,
                    ..
                } = shape
                {
                    *match field {
                        "layers" => layers,
                        "embd" => embd,
                        "heads" => heads,
                        "kv_heads" => kv_heads,
                        "ff" => ff,
                        _ => context,
                    } = v;
                }
            }
        };
        assert!(with(&set("layers", 0)).contains("layers"));
        assert!(with(&set("context", 0)).contains("context"));
        assert!(with(&set("embd", 66)).contains("embd (66)"));
        assert!(with(&set("kv_heads", 3)).contains("kv_heads (3)"));
        assert!(
            attempt(tiny_llama(&source), GgmlType::from_name("Q4_0").unwrap()).contains("Q4_0")
        );
        // Refuses to replace its own source.
        let err = synth(
            &SynthSpec {
                shape: SynthShape::Like(source.clone()),
                out: source.clone(),
                dtype: F16,
                seed: 1,
            },
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("replace"));
        assert!(!out.exists());
        assert!(!out.with_extension("gguf.part").exists());
    }
}
