//! An in-process memory bandwidth measurement for the roofline: every core copies its share of a
//! buffer far larger than the caches; the best of several passes is reported, counting bytes read
//! plus bytes written (the STREAM "copy" convention).

use std::time::Instant;

/// Bytes per buffer (two buffers are used: source and destination).
pub const BUFFER_BYTES: usize = 512 << 20;
const PASSES: usize = 5;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Bandwidth {
    /// Best pass, in GB/s (10^9 bytes), read + write.
    pub gb_per_s: f64,
    pub threads: usize,
    pub buffer_bytes: usize,
    pub passes: usize,
}

pub fn measure() -> Bandwidth {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let words = BUFFER_BYTES / 8;
    let source: Vec<u64> = (0..words as u64).collect();
    let mut dest = vec![0u64; words];
    let chunk = words.div_ceil(threads);
    let mut best = f64::MAX;
    for _ in 0..PASSES {
        let start = Instant::now();
        std::thread::scope(|scope| {
            for (src, dst) in source.chunks(chunk).zip(dest.chunks_mut(chunk)) {
                scope.spawn(move || dst.copy_from_slice(src));
            }
        });
        best = best.min(start.elapsed().as_secs_f64());
    }
    // Keep the copy observable so it cannot be optimised away.
    std::hint::black_box(&dest);
    Bandwidth {
        gb_per_s: (2 * BUFFER_BYTES) as f64 / best / 1e9,
        threads,
        buffer_bytes: BUFFER_BYTES,
        passes: PASSES,
    }
}
