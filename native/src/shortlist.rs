//! An int8 copy of a table's vectors, for the first pass of an exact vector search.
//!
//! Each row is scaled by its own largest magnitude to -127..127 (one f32 scale per row).
//! `shortlist` scores every row against the query, quantized the same way, with integer dot
//! products (a quarter of the float32 matrix's memory traffic, on every core) and returns
//! the positions of the `k` best. Python then scores those rows again in float32 and keeps
//! the true best (`tasks/lance_store.py`); the approximate scores never reach a caller.

use std::num::NonZeroUsize;
use std::thread;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::{as_bytes, read_vec};

/// Below this many matrix elements one thread scores everything (a thread costs ~50 µs).
const PARALLEL_MIN: usize = 1 << 20;

/// `row` scaled into `out` as integers in -127..=127; returns the scale (0 for a row of
/// zeros or one that is not finite, whose codes are all zero).
fn quantize(row: &[f32], out: &mut [i8]) -> f32 {
    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max == 0.0 || !max.is_finite() {
        out.fill(0);
        return 0.0;
    }
    let inverse = 127.0 / max;
    for (code, value) in out.iter_mut().zip(row) {
        let scaled = value * inverse; // rounded half away from zero; `as` saturates
        *code = (scaled + 0.5f32.copysign(scaled)) as i8;
    }
    max / 127.0
}

#[inline(always)]
fn dot(a: &[i8], b: &[i8]) -> i32 {
    // 8192 dims x 127 x 127 stays well inside i32.
    a.iter().zip(b).map(|(&x, &y)| i32::from(x) * i32::from(y)).sum()
}

#[inline(always)]
fn score_rows(codes: &[i8], scales: &[f32], query: &[i8], out: &mut [f32]) {
    for ((row, scale), score) in codes.chunks_exact(query.len()).zip(scales).zip(out) {
        *score = dot(row, query) as f32 * scale;
    }
}

/// `score_rows` compiled for AVX2, which widens and multiplies 16 codes at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn score_rows_avx2(codes: &[i8], scales: &[f32], query: &[i8], out: &mut [f32]) {
    score_rows(codes, scales, query, out)
}

fn score_part(codes: &[i8], scales: &[f32], query: &[i8], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // Safety: the CPU has just been found to support AVX2.
        return unsafe { score_rows_avx2(codes, scales, query, out) };
    }
    score_rows(codes, scales, query, out)
}

/// How many of `rows` rows (`elements` values) each thread takes: all of them below
/// `PARALLEL_MIN`, else an equal share per core.
fn rows_per_thread(elements: usize, rows: usize) -> usize {
    let cores = thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let threads = if elements < PARALLEL_MIN { 1 } else { cores.min(rows) };
    rows.div_ceil(threads).max(1)
}

/// The `k` best rows of one part, as (approximate score, position + `offset`).
fn part_best(codes: &[i8], scales: &[f32], query: &[i8], offset: usize, k: usize) -> Vec<(f32, u32)> {
    let mut scores = vec![0f32; scales.len()];
    score_part(codes, scales, query, &mut scores);
    best(&scores, k)
        .into_iter()
        .map(|i| (scores[i as usize], i + offset as u32))
        .collect()
}

/// Positions of the `k` rows with the highest approximate scores, best first, ties by
/// position: each core takes a share of the rows and keeps its `k` best.
fn top_rows(codes: &[i8], scales: &[f32], query: &[i8], k: usize) -> Vec<u32> {
    let rows = scales.len();
    let per_part = rows_per_thread(codes.len(), rows);
    let mut found: Vec<(f32, u32)> = thread::scope(|scope| {
        let parts = codes
            .chunks(per_part * query.len())
            .zip(scales.chunks(per_part))
            .enumerate();
        let handles: Vec<_> = parts
            .map(|(n, (c, s))| scope.spawn(move || part_best(c, s, query, n * per_part, k)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a scoring thread panicked"))
            .collect()
    });
    found.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    found.into_iter().take(k).map(|(_, position)| position).collect()
}

/// Every row of `values` quantized, the rows split among the machine's cores.
fn quantize_all(values: &[f32], dims: usize) -> Int8Rows {
    let rows = values.len() / dims;
    let (mut codes, mut scales) = (vec![0i8; values.len()], vec![0f32; rows]);
    let per_part = rows_per_thread(values.len(), rows);
    thread::scope(|scope| {
        let outs = codes.chunks_mut(per_part * dims).zip(scales.chunks_mut(per_part));
        for ((out, part_scales), part) in outs.zip(values.chunks(per_part * dims)) {
            scope.spawn(move || {
                let rows = part.chunks_exact(dims).zip(out.chunks_exact_mut(dims));
                for (scale, (row, codes)) in part_scales.iter_mut().zip(rows) {
                    *scale = quantize(row, codes);
                }
            });
        }
    });
    Int8Rows { codes, scales, dims }
}

/// The vectors of one matrix, as int8 codes and a scale per row.
#[pyclass(frozen)]
pub struct Int8Rows {
    codes: Vec<i8>,
    scales: Vec<f32>,
    dims: usize,
}

#[pymethods]
impl Int8Rows {
    /// `vectors`: a C-contiguous float32 buffer (a numpy array), `dims` per row; read in
    /// place, without a copy.
    #[new]
    fn new(py: Python<'_>, vectors: PyBuffer<f32>, dims: usize) -> PyResult<Self> {
        if !vectors.is_c_contiguous() {
            return Err(PyValueError::new_err(
                "the vectors must be one C-contiguous float32 array",
            ));
        }
        let count = vectors.item_count();
        if dims == 0 || !count.is_multiple_of(dims) {
            return Err(PyValueError::new_err(format!("{count} floats are not rows of {dims}")));
        }
        // Safety: a contiguous buffer of `count` f32, held (and not resized) by `vectors`
        // until this function returns; nothing here writes to it.
        let values = unsafe { std::slice::from_raw_parts(vectors.buf_ptr() as *const f32, count) };
        Ok(py.detach(|| quantize_all(values, dims)))
    }

    /// Positions (uint32 bytes, best first) of the `k` rows whose approximate dot product
    /// with `query` (float32 bytes, `dims` of them) is highest; ties go to the lower position.
    fn shortlist<'py>(&self, py: Python<'py>, query: &[u8], k: usize) -> PyResult<Bound<'py, PyBytes>> {
        let query: Vec<f32> = read_vec(query, "query")?;
        if query.len() != self.dims {
            return Err(PyValueError::new_err(format!(
                "the query has {} dims, the rows {}",
                query.len(),
                self.dims
            )));
        }
        let top = py.detach(|| {
            let mut codes = vec![0i8; self.dims];
            quantize(&query, &mut codes);
            top_rows(&self.codes, &self.scales, &codes, k)
        });
        Ok(PyBytes::new(py, as_bytes(&top)))
    }

    fn __len__(&self) -> usize {
        self.scales.len()
    }
}

/// Positions of the `k` highest scores, best first, ties by position.
fn best(scores: &[f32], k: usize) -> Vec<u32> {
    let k = k.min(scores.len());
    if k == 0 {
        return Vec::new();
    }
    let mut sorted = scores.to_vec();
    let (_, &mut threshold, _) = sorted.select_nth_unstable_by(scores.len() - k, f32::total_cmp);
    let above = |s: &f32| s.total_cmp(&threshold).is_gt();
    let mut top: Vec<u32> = (0..scores.len() as u32)
        .filter(|&i| above(&scores[i as usize]))
        .collect();
    let ties = (0..scores.len() as u32).filter(|&i| scores[i as usize].total_cmp(&threshold).is_eq());
    top.extend(ties.take(k - top.len()));
    top.sort_unstable_by(|a, b| scores[*b as usize].total_cmp(&scores[*a as usize]).then(a.cmp(b)));
    top
}
