//! codeflow's optional native core: the local embedder's tokenizer and pooling, and the
//! code-aware tokens of BM25 documents, and the int8 first pass of vector search
//! (`shortlist.rs`).
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
use std::sync::Mutex;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rustc_hash::FxHashMap;

mod shortlist;

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

/// Remembered pieces: piece -> where its IDs are in `ids`, and how many.
#[derive(Default)]
struct PieceMemo {
    index: FxHashMap<Box<str>, (u32, u32)>,
    ids: Vec<i32>,
}

/// Calls from several threads take turns on the memo (the GIL is released meanwhile).
#[pyclass(module = "codeflow_native", frozen)]
struct PieceEncoder {
    vocab: FxHashMap<String, u32>,
    merges: FxHashMap<(u32, u32), (u32, u32)>,
    byte_ids: [u32; 256],
    memo: Mutex<PieceMemo>,
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
    fn piece_ids(&self, memo: &mut PieceMemo, piece: &str, out: &mut Vec<i32>) {
        if let Some(&(start, len)) = memo.index.get(piece) {
            out.extend_from_slice(&memo.ids[start as usize..(start + len) as usize]);
            return;
        }
        if memo.index.len() >= self.max_pieces {
            memo.index.clear();
            memo.ids.clear();
        }
        let start = memo.ids.len();
        let mut learned = Vec::new();
        self.bpe(piece, &mut learned);
        memo.ids.extend_from_slice(&learned);
        out.extend_from_slice(&learned);
        memo.index.insert(piece.into(), (start as u32, learned.len() as u32));
    }

    /// Token IDs of one text: normalised, cut into pieces, each piece looked up or learned.
    fn encode_text(&self, memo: &mut PieceMemo, text: &str, piece: &mut String, out: &mut Vec<i32>) {
        if text.is_empty() {
            return;
        }
        piece.clear();
        piece.push(SPACE);
        let mut in_word = false; // the piece holds a character other than `▁`
        for ch in text.chars() {
            let space = ch == ' ' || ch == SPACE;
            if space && in_word {
                self.piece_ids(memo, piece, out);
                piece.clear();
                in_word = false;
            }
            piece.push(if space { SPACE } else { ch });
            in_word |= !space;
        }
        self.piece_ids(memo, piece, out);
    }
}

fn as_bytes<T: Copy>(values: &[T]) -> &[u8] {
    // Safety: plain numeric values, read as the bytes they are stored in.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), std::mem::size_of_val(values)) }
}

fn read_vec<T: Copy + Default>(raw: &[u8], what: &str) -> PyResult<Vec<T>> {
    let size = std::mem::size_of::<T>();
    if !raw.len().is_multiple_of(size) {
        return Err(PyValueError::new_err(format!(
            "{what}: {} bytes is not a whole number of items",
            raw.len()
        )));
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
                vocab
                    .get(s)
                    .copied()
                    .ok_or_else(|| PyValueError::new_err(format!("merge token {s:?} is not in the vocabulary")))
            };
            merge_map.insert((id(a)?, id(b)?), (rank as u32, id(&format!("{a}{b}"))?));
        }
        let table: Vec<f32> = read_vec(table, "table")?;
        if dims == 0 || !table.len().is_multiple_of(dims) || vocab.values().any(|&id| id as usize >= table.len() / dims)
        {
            return Err(PyValueError::new_err(
                "the embedding table does not match the vocabulary",
            ));
        }
        let memo = Mutex::new(PieceMemo::default());
        Ok(Self {
            vocab,
            merges: merge_map,
            byte_ids,
            memo,
            max_pieces: max_pieces.max(1),
            table,
            dims,
        })
    }

    /// Every text's token IDs as int32 bytes, and each text's bounds in them as int64
    /// bytes (`len(texts) + 1` values).
    fn encode<'py>(&self, py: Python<'py>, texts: Vec<String>) -> (Bound<'py, PyBytes>, Bound<'py, PyBytes>) {
        let (ids, bounds) = py.detach(|| {
            let mut memo = self.memo.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut ids: Vec<i32> = Vec::with_capacity(texts.iter().map(|t| t.len() / 3).sum());
            let mut bounds: Vec<i64> = Vec::with_capacity(texts.len() + 1);
            let mut piece = String::new();
            bounds.push(0);
            for text in &texts {
                self.encode_text(&mut memo, text, &mut piece, &mut ids);
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
        let valid = bounds
            .windows(2)
            .all(|w| 0 <= w[0] && w[0] <= w[1] && w[1] as usize <= ids.len());
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
        self.memo.lock().map_or(0, |memo| memo.index.len())
    }
}

/// BM25 documents of code: `tasks.codetokens._joined_tokens` for texts that are all ASCII.
///
/// The text is cut into runs of ASCII letters, digits and `_`; a run is one identifier once
/// its outer underscores are stripped. Each identifier yields itself lower-cased, then (unless
/// it is plain lower-case or capitalised letters) its parts: per `_`-separated piece, the
/// matches of `[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+`, lower-cased, after the piece
/// itself when it is lower-case letters and digits. Tokens of 1 or more than `max_chars`
/// characters and stop words are left out. Python handles texts with other characters.
/// Calls from several threads take turns on the memo (the GIL is released meanwhile).
#[pyclass(module = "codeflow_native", frozen)]
struct CodeTokenizer {
    stop_words: rustc_hash::FxHashSet<String>,
    max_chars: usize,
    memo: Mutex<FxHashMap<Box<str>, Box<str>>>, // identifier -> its tokens: code repeats them
}

const MAX_WORDS: usize = 1 << 18; // remembered identifiers before the memo starts over

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The end of the `_PART` match starting at `i` of `piece` (ASCII letters and digits).
fn part_end(piece: &[u8], i: usize) -> usize {
    let run = |from: usize, pred: fn(&u8) -> bool| from + piece[from..].iter().take_while(|b| pred(b)).count();
    let c = piece[i];
    if c.is_ascii_digit() {
        return run(i, u8::is_ascii_digit);
    }
    if c.is_ascii_lowercase() {
        return run(i, u8::is_ascii_lowercase);
    }
    let upper_end = run(i, u8::is_ascii_uppercase);
    let lower_after = piece.get(upper_end).is_some_and(u8::is_ascii_lowercase);
    if upper_end - i >= 2 && lower_after {
        upper_end - 1 // an acronym before a capitalised word: HTTP|Server
    } else if upper_end - i == 1 && lower_after {
        run(upper_end, u8::is_ascii_lowercase) // a capitalised word
    } else {
        upper_end
    }
}

impl CodeTokenizer {
    fn keep(&self, token: &str) -> bool {
        1 < token.len() && token.len() <= self.max_chars && !self.stop_words.contains(token)
    }

    fn push(&self, out: &mut String, token: &str) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(token);
    }

    /// The parts of one `_`-free piece, or None when it has at most one.
    fn parts<'a>(&self, piece: &'a [u8]) -> Option<Vec<&'a [u8]>> {
        let mut parts = Vec::new();
        let mut i = 0;
        while i < piece.len() {
            let end = part_end(piece, i);
            parts.push(&piece[i..end]);
            i = end;
        }
        (parts.len() > 1).then_some(parts)
    }

    fn expand(&self, word: &str, out: &mut String) {
        let whole = word.to_ascii_lowercase();
        if self.keep(&whole) {
            self.push(out, &whole);
        }
        let bytes = word.as_bytes();
        let letters = bytes.iter().all(u8::is_ascii_alphabetic);
        let lower = |b: &[u8]| b.iter().any(u8::is_ascii_lowercase) && !b.iter().any(u8::is_ascii_uppercase);
        if letters && (lower(bytes) || lower(&bytes[1..])) {
            return;
        }
        for piece in word.split('_').filter(|p| !p.is_empty()) {
            let mut emit = |token: &str| {
                if token != whole && self.keep(token) {
                    self.push(out, token);
                }
            };
            match self.parts(piece.as_bytes()) {
                None => emit(&piece.to_ascii_lowercase()),
                Some(parts) => {
                    if lower(piece.as_bytes()) {
                        emit(piece);
                    }
                    for part in parts {
                        // Safety of from_utf8: ASCII bytes.
                        emit(&std::str::from_utf8(part).unwrap_or_default().to_ascii_lowercase());
                    }
                }
            }
        }
    }

    fn joined(&self, memo: &mut FxHashMap<Box<str>, Box<str>>, text: &str) -> Option<String> {
        if !text.is_ascii() {
            return None;
        }
        let mut out = String::with_capacity(text.len() / 2);
        let mut tokens = String::new();
        for run in text.split(|c: char| !is_word_byte(c as u8)) {
            let word = run.trim_matches('_');
            if word.is_empty() {
                continue;
            }
            if !memo.contains_key(word) {
                tokens.clear();
                self.expand(word, &mut tokens);
                if memo.len() >= MAX_WORDS {
                    memo.clear();
                }
                memo.insert(word.into(), tokens.as_str().into());
            }
            let known = &memo[word];
            if !known.is_empty() {
                self.push(&mut out, known);
            }
        }
        Some(out)
    }
}

#[pymethods]
impl CodeTokenizer {
    #[new]
    fn new(stop_words: Vec<String>, max_chars: usize) -> Self {
        let memo = Mutex::new(FxHashMap::default());
        Self {
            stop_words: stop_words.into_iter().collect(),
            max_chars,
            memo,
        }
    }

    /// Each text's tokens joined by single spaces; None for a text that is not all ASCII.
    fn joined_tokens(&self, py: Python<'_>, texts: Vec<String>) -> Vec<Option<String>> {
        py.detach(|| {
            let mut memo = self.memo.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            texts.iter().map(|t| self.joined(&mut memo, t)).collect()
        })
    }
}

#[pymodule]
fn codeflow_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PieceEncoder>()?;
    m.add_class::<CodeTokenizer>()?;
    m.add_class::<shortlist::Int8Rows>()
}
