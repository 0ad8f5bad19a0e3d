//! codeflow's optional native core: the local embedder's tokenizer and pooling.
//!
//! `PieceEncoder` gives the same token IDs as `tasks.piece_tokens.PieceTokenizer` (and so
//! as WordLlama's Hugging Face tokenizer): the text is normalised (a `▁` prepended, spaces
//! turned into `▁`), cut before every `▁` that follows another character, and each distinct
//! piece is encoded once by byte-level-fallback BPE, then remembered. The BPE follows the
//! `tokenizers` crate's algorithm step for step (a heap of merges by rank, then position).
//! `mean_rows` averages each text's token vectors in the order numpy's `add.reduce` does,
//! so the vectors are bit-for-bit those of the Python path.
//!
//! Python checks that a tokenizer has the shape this code assumes (see
//! `tasks/native_pieces.py`) and keeps its own implementation for everything else.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rustc_hash::FxHashMap;

const SPACE: char = '\u{2581}';

/// A merge that may apply at `pos`: lowest rank first, then leftmost (as in `tokenizers`).
#[derive(PartialEq, Eq)]
struct Merge {
    pos: usize,
    rank: u32,
    new_id: u32,
}

impl Ord for Merge {
    fn cmp(&self, other: &Self) -> Ordering {
        other.rank.cmp(&self.rank).then_with(|| other.pos.cmp(&self.pos))
    }
}

impl PartialOrd for Merge {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    id: u32,
    prev: isize,
    next: isize,
    alive: bool,
}

#[pyclass(module = "codeflow_native")]
struct PieceEncoder {
    vocab: FxHashMap<String, u32>,
    merges: FxHashMap<(u32, u32), (u32, u32)>,
    byte_ids: [u32; 256],
    memo: FxHashMap<Box<str>, (u32, u32)>,
    ids: Vec<i32>,
    max_pieces: usize,
    table: Vec<f32>,
    dims: usize,
}

impl PieceEncoder {
    /// The initial symbols of `piece`: one per character in the vocabulary, else one per
    /// UTF-8 byte (`<0xNN>` tokens).
    fn symbols(&self, piece: &str) -> Vec<Symbol> {
        let mut ids = Vec::with_capacity(piece.len());
        let mut buf = [0u8; 4];
        for ch in piece.chars() {
            let s = ch.encode_utf8(&mut buf);
            match self.vocab.get(&*s) {
                Some(&id) => ids.push(id),
                None => ids.extend(s.bytes().map(|b| self.byte_ids[b as usize])),
            }
        }
        let last = ids.len() as isize - 1;
        ids.iter()
            .enumerate()
            .map(|(i, &id)| Symbol {
                id,
                prev: i as isize - 1,
                next: if i as isize == last { -1 } else { i as isize + 1 },
                alive: true,
            })
            .collect()
    }

    fn merge_at(&self, left: u32, right: u32, pos: usize) -> Option<Merge> {
        self.merges
            .get(&(left, right))
            .map(|&(rank, new_id)| Merge { pos, rank, new_id })
    }

    /// BPE over one piece, appending its token IDs to `out`.
    fn bpe(&self, piece: &str, out: &mut Vec<i32>) {
        let mut syms = self.symbols(piece);
        let mut queue: BinaryHeap<Merge> = syms
            .windows(2)
            .enumerate()
            .filter_map(|(i, w)| self.merge_at(w[0].id, w[1].id, i))
            .collect();
        while let Some(top) = queue.pop() {
            let here = syms[top.pos];
            if !here.alive || here.next < 0 {
                continue;
            }
            let next = here.next as usize;
            let right = syms[next];
            match self.merges.get(&(here.id, right.id)) {
                Some(&(_, new_id)) if new_id == top.new_id => {}
                _ => continue, // an entry made stale by an earlier merge
            }
            syms[top.pos].id = top.new_id;
            syms[top.pos].next = right.next;
            syms[next].alive = false;
            if right.next >= 0 {
                syms[right.next as usize].prev = top.pos as isize;
            }
            let current = syms[top.pos];
            if current.prev >= 0 {
                let prev = current.prev as usize;
                queue.extend(self.merge_at(syms[prev].id, current.id, prev));
            }
            if current.next >= 0 {
                queue.extend(self.merge_at(current.id, syms[current.next as usize].id, top.pos));
            }
        }
        out.extend(syms.iter().filter(|s| s.alive).map(|s| s.id as i32));
    }

    /// Appends the IDs of the normalised `piece` to `out`, from the memo or learned now.
    fn piece_ids(&mut self, piece: &str, out: &mut Vec<i32>) {
        if let Some(&(start, len)) = self.memo.get(piece) {
            out.extend_from_slice(&self.ids[start as usize..(start + len) as usize]);
            return;
        }
        if self.memo.len() >= self.max_pieces {
            self.memo.clear();
            self.ids.clear();
        }
        let start = self.ids.len();
        let mut learned = Vec::new();
        self.bpe(piece, &mut learned);
        self.ids.extend_from_slice(&learned);
        out.extend_from_slice(&learned);
        self.memo.insert(piece.into(), (start as u32, learned.len() as u32));
    }

    /// Token IDs of one text: normalised, cut into pieces, each piece looked up or learned.
    fn encode_text(&mut self, text: &str, piece: &mut String, out: &mut Vec<i32>) {
        if text.is_empty() {
            return;
        }
        piece.clear();
        piece.push(SPACE);
        let mut in_word = false; // the piece holds a character other than `▁`
        for ch in text.chars() {
            let space = ch == ' ' || ch == SPACE;
            if space && in_word {
                self.piece_ids(piece, out);
                piece.clear();
                in_word = false;
            }
            piece.push(if space { SPACE } else { ch });
            in_word |= !space;
        }
        self.piece_ids(piece, out);
    }
}

fn as_bytes<T: Copy>(values: &[T]) -> &[u8] {
    // Safety: plain numeric values, read as the bytes they are stored in.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), std::mem::size_of_val(values)) }
}

fn read_vec<T: Copy + Default>(raw: &[u8], what: &str) -> PyResult<Vec<T>> {
    let size = std::mem::size_of::<T>();
    if raw.len() % size != 0 {
        return Err(PyValueError::new_err(format!("{what}: {} bytes is not a whole number of items", raw.len())));
    }
    let mut values = vec![T::default(); raw.len() / size];
    // Safety: the destination holds exactly raw.len() bytes of plain numeric values.
    unsafe { std::ptr::copy_nonoverlapping(raw.as_ptr(), values.as_mut_ptr().cast(), raw.len()) };
    Ok(values)
}

#[pymethods]
impl PieceEncoder {
    /// `vocab` and `merges` as in the tokenizer's JSON; `table` the embedding matrix as
    /// float32 bytes, `dims` values per row.
    #[new]
    fn new(
        vocab: FxHashMap<String, u32>,
        merges: Vec<(String, String)>,
        table: &[u8],
        dims: usize,
        max_pieces: usize,
    ) -> PyResult<Self> {
        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = *vocab
                .get(&format!("<0x{b:02X}>"))
                .ok_or_else(|| PyValueError::new_err("the vocabulary lacks byte-fallback tokens"))?;
        }
        let mut merge_map = FxHashMap::default();
        for (rank, (a, b)) in merges.iter().enumerate() {
            let id = |s: &str| {
                vocab.get(s).copied().ok_or_else(|| PyValueError::new_err(format!("merge token {s:?} is not in the vocabulary")))
            };
            merge_map.insert((id(a)?, id(b)?), (rank as u32, id(&format!("{a}{b}"))?));
        }
        let table: Vec<f32> = read_vec(table, "table")?;
        if dims == 0 || table.len() % dims != 0 || vocab.values().any(|&id| id as usize >= table.len() / dims) {
            return Err(PyValueError::new_err("the embedding table does not match the vocabulary"));
        }
        Ok(Self { vocab, merges: merge_map, byte_ids, memo: FxHashMap::default(), ids: Vec::new(), max_pieces: max_pieces.max(1), table, dims })
    }

    /// Every text's token IDs as int32 bytes, and each text's bounds in them as int64
    /// bytes (`len(texts) + 1` values).
    fn encode<'py>(&mut self, py: Python<'py>, texts: Vec<String>) -> (Bound<'py, PyBytes>, Bound<'py, PyBytes>) {
        let (ids, bounds) = py.detach(|| {
            let mut ids: Vec<i32> = Vec::with_capacity(texts.iter().map(|t| t.len() / 3).sum());
            let mut bounds: Vec<i64> = Vec::with_capacity(texts.len() + 1);
            let mut piece = String::new();
            bounds.push(0);
            for text in &texts {
                self.encode_text(text, &mut piece, &mut ids);
                bounds.push(ids.len() as i64);
            }
            (ids, bounds)
        });
        (PyBytes::new(py, as_bytes(&ids)), PyBytes::new(py, as_bytes(&bounds)))
    }

    /// The mean of each text's token vectors (float32 bytes, `dims` per text; zeros for a
    /// text without tokens), from the bytes `encode` returns.
    fn mean_rows<'py>(&self, py: Python<'py>, ids: &[u8], bounds: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let ids: Vec<i32> = read_vec(ids, "ids")?;
        let bounds: Vec<i64> = read_vec(bounds, "bounds")?;
        let rows = self.table.len() / self.dims;
        let valid = bounds.windows(2).all(|w| 0 <= w[0] && w[0] <= w[1] && w[1] as usize <= ids.len());
        if !valid || ids.iter().any(|&id| id < 0 || id as usize >= rows) {
            return Err(PyValueError::new_err("token IDs or bounds out of range"));
        }
        let dims = self.dims;
        let out = py.detach(|| {
            let mut out = vec![0f32; bounds.len().saturating_sub(1) * dims];
            for (row, w) in bounds.windows(2).enumerate() {
                let (start, end) = (w[0] as usize, w[1] as usize);
                if end == start {
                    continue;
                }
                let acc = &mut out[row * dims..(row + 1) * dims];
                for &id in &ids[start..end] {
                    let vector = &self.table[id as usize * dims..(id as usize + 1) * dims];
                    acc.iter_mut().zip(vector).for_each(|(a, v)| *a += v);
                }
                let count = (end - start) as f32;
                acc.iter_mut().for_each(|a| *a /= count);
            }
            out
        });
        Ok(PyBytes::new(py, as_bytes(&out)))
    }

    /// How many distinct pieces are remembered.
    fn __len__(&self) -> usize {
        self.memo.len()
    }
}

#[pymodule]
fn codeflow_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PieceEncoder>()
}
