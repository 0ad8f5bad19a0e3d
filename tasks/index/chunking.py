"""Load & chunk: turn one file's bytes into embeddable chunks, or say why it was skipped.

Pure logic: the caller reads the files and passes ``(path, bytes)``; nothing here touches
the disk. Code is split on syntax boundaries: each definition (function, method, class,
struct, impl, interface, module) with its doc comment is a unit, a class too big for one
chunk is cut into its members, and the code between definitions is grouped. Python's
outline is read by a fast layout scan (:mod:`~tasks.index.python_outline`), the other
languages' by tree-sitter (:mod:`~tasks.index.syntax_outline`). Long definitions, text, and
languages without a grammar go through a generic splitter that prefers breaking at blank
lines and shallow indentation, between statements. Small neighbours are then merged, so a
run of one-line accessors is one chunk, not ten. Either way the guarantees are the same:

* every chunk fits the budget (``max_chunk_chars`` characters and ``max_chunk_tokens``
  estimated tokens);
* every non-blank line of the decoded file is in exactly one chunk, and a chunk's text is
  exactly its lines ``start_line..end_line`` joined by ``\\n`` (a single line longer than
  the budget is the one exception: it is cut into consecutive pieces, each carrying that
  line's number);
* nothing raises on odd input: undecodable bytes become U+FFFD, Python whose brackets do
  not balance falls back to the generic splitter.

>>> chunks = chunk_file("pkg/mod.py", b"import os\\n\\ndef main():\\n    return os.getcwd()\\n")
>>> [(c.kind, c.symbol, c.start_line, c.end_line) for c in chunks]
[('module', None, 1, 1), ('function', 'main', 3, 4)]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate

from config.errors import ConfigError
from tasks.index.languages import (
    SkipReason,
    decode_source,
    detect_language,
    find_symbol,
    has_generated_marker,
    language_from_shebang,
    looks_binary,
    looks_minified,
    path_skip_reason,
)
from tasks.index.python_outline import Definition, outline
from tasks.index.syntax_outline import outline as syntax_outline
from tasks.records import Chunk, ChunkKind

__all__ = [
    "ChunkingPolicy",
    "Skip",
    "SkipReason",
    "chunk_file",
    "chunk_files",
    "chunk_text",
    "chunker_id",
    "detect_language",
    "estimate_tokens",
    "skip_reason_for_path",
]

#: Bumped whenever the same file may be cut into other chunks: an index made by another
#: version is rebuilt by the next run (its chunk IDs would not match).
CHUNKER_VERSION = 3
_CPP_HEADER = re.compile(r"^\s*(?:namespace\s+\w+\s*\{|template\s*<|class\s+\w+\s*[:{])", re.M)
_BYTES_PER_TOKEN = 3
_MAX_INDENT = 32
_COMMENT_LEADERS = ("#", "//", "/*", "*", "--", ";", "@", "<!--", "%")


@dataclass(frozen=True)
class ChunkingPolicy:
    """What to skip and how big a chunk may be; the defaults suit code search.

    ``max_chunk_tokens`` is checked with :func:`estimate_tokens` (no tokenizer download):
    with the defaults, ASCII code is bounded by characters and text in other scripts by
    tokens. ``ignore_globs`` come from the caller's ignore file.
    """

    max_chunk_chars: int = 1500
    max_chunk_tokens: int = 512
    #: Neighbouring chunks smaller than this are merged while the union fits the budget.
    min_chunk_chars: int = 0
    max_file_bytes: int = 1_000_000
    minified_avg_line_chars: int = 200
    minified_min_chars: int = 2048
    binary_sniff_bytes: int = 8192
    binary_control_ratio: float = 0.3
    generated_scan_lines: int = 10
    skip_generated: bool = True
    skip_vendored: bool = True
    skip_minified: bool = True
    ignore_globs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_chunk_chars < 8 or self.max_chunk_tokens < 4:
            raise ConfigError(
                "chunk budget too small: use max_chunk_chars >= 8 and max_chunk_tokens >= 4"
            )
        if self.max_file_bytes < 1:
            raise ConfigError("max_file_bytes must be positive")


@dataclass(frozen=True)
class Skip:
    """A file that produced no chunks, and why (``reason`` is a :data:`SkipReason`)."""

    path: str
    reason: SkipReason


def chunker_id(policy: ChunkingPolicy) -> str:
    """What decides how files are cut: the chunker's version and the chunk budget."""
    return (
        f"v{CHUNKER_VERSION}:{policy.max_chunk_chars}:{policy.max_chunk_tokens}"
        f":{policy.min_chunk_chars}"
    )


def estimate_tokens(text: str) -> int:
    """Cheap, offline, deliberately pessimistic token count: one token per 3 UTF-8 bytes.

    BPE tokenizers average ~3.5-4 characters per token on code and ~1 token per CJK
    character (3 bytes), so this errs on the side of smaller chunks.
    """
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return -(-size // _BYTES_PER_TOKEN)


def skip_reason_for_path(path: str, policy: ChunkingPolicy) -> SkipReason | None:
    """Reason to skip ``path`` without reading it (vendored, lock file, binary extension...)."""
    reason = path_skip_reason(path, policy.ignore_globs)
    switches = {
        "vendored": policy.skip_vendored,
        "generated": policy.skip_generated,
        "minified": policy.skip_minified,
    }
    return reason if reason is None or switches.get(reason, True) else None


def chunk_file(
    path: str, data: bytes, policy: ChunkingPolicy = ChunkingPolicy()
) -> list[Chunk] | Skip:
    """Chunks of one file, or a :class:`Skip` saying why it has none. Never raises.

    ``path`` is repo-relative and ``/``-separated; it decides the language and the
    path-based skips, and is copied into every chunk.
    """
    reason = skip_reason_for_path(path, policy)
    if reason is None and len(data) > policy.max_file_bytes:
        reason = "oversized"
    if reason is None and looks_binary(
        data, policy.binary_sniff_bytes, policy.binary_control_ratio
    ):
        reason = "binary"
    if reason is not None:
        return Skip(path, reason)
    text = decode_source(data)
    language = _refine_language(detect_language(path), text)
    reason = _content_skip_reason(text, language, policy)
    if reason is not None:
        return Skip(path, reason)
    return chunk_text(path, text, language, policy)


def chunk_files(
    items: Iterable[tuple[str, bytes]], policy: ChunkingPolicy = ChunkingPolicy()
) -> tuple[list[Chunk], list[Skip]]:
    """Chunk many files: all chunks in input order, and the files that were skipped."""
    chunks: list[Chunk] = []
    skips: list[Skip] = []
    for path, data in items:
        result = chunk_file(path, data, policy)
        if isinstance(result, Skip):
            skips.append(result)
        else:
            chunks.extend(result)
    return chunks, skips


def chunk_text(
    path: str, text: str, language: str, policy: ChunkingPolicy = ChunkingPolicy()
) -> list[Chunk]:
    """Chunks of already decoded text (``\\n`` newlines), with no skip checks."""
    lines = _Lines(text, policy)
    emitter = _Emitter(path, language, lines)
    if not emitter.definitions(_outline(path, text, language)):
        emitter.reset()
        emitter.span(0, len(lines.lines), None, "window")
    return _merge_small(emitter.chunks, lines, policy.min_chunk_chars)


def _outline(path: str, text: str, language: str) -> list[Definition] | None:
    if language == "python":
        return outline(text)
    if language == "typescript" and path.endswith(".tsx"):
        language = "tsx"
    return syntax_outline(text, language)


def _merge_small(chunks: list[Chunk], lines: _Lines, min_chars: int) -> list[Chunk]:
    """Consecutive chunks under ``min_chars`` joined while the union fits the budget."""
    if min_chars <= 0 or len(chunks) < 2:
        return chunks
    out = [chunks[0]]
    for chunk in chunks[1:]:
        last = out[-1]
        if _small(last, min_chars) and _small(chunk, min_chars):
            a, b = last.start_line - 1, chunk.end_line
            if lines.fits(a, b) and last.end_line < chunk.start_line:
                out[-1] = _joined(last, chunk, lines.text_of(a, b))
                continue
        out.append(chunk)
    return out


def _small(chunk: Chunk, min_chars: int) -> bool:
    return len(chunk.text) < min_chars


def _joined(first: Chunk, second: Chunk, text: str) -> Chunk:
    """One chunk of both; its symbol names each definition it holds."""
    names = (n for c in (first, second) for n in (c.symbol or "").split(", ") if n)
    symbol = ", ".join(dict.fromkeys(names)) or None
    kind = first.kind if first.kind == second.kind else "window"
    return Chunk(first.path, first.language, first.start_line, second.end_line, text, symbol, kind)


def _refine_language(language: str, text: str) -> str:
    """A ``.h`` header written in C++ is C++; a script without extension has a shebang."""
    if language == "c" and _CPP_HEADER.search(text):
        return "cpp"
    if language != "text":
        return language
    return language_from_shebang(text[:200].partition("\n")[0]) or language


def _content_skip_reason(text: str, language: str, policy: ChunkingPolicy) -> SkipReason | None:
    if not text or text.isspace():
        return "empty"
    if policy.skip_minified and looks_minified(
        text, language, policy.minified_avg_line_chars, policy.minified_min_chars
    ):
        return "minified"
    if policy.skip_generated and has_generated_marker(text, policy.generated_scan_lines):
        return "generated"
    return None


class _Lines:
    """The decoded text as lines, with prefix sums so that any span's size is O(1).

    Spans are 0-based half-open line ranges ``[a, b)``.
    """

    def __init__(self, text: str, policy: ChunkingPolicy) -> None:
        self.text = text
        self.lines = text.split("\n")
        self.chars = list(accumulate(map(len, self.lines), initial=0))
        max_bytes = policy.max_chunk_tokens * _BYTES_PER_TOKEN
        self.bytes: list[int] | None = None
        self.max_chars = policy.max_chunk_chars
        self.max_bytes = max_bytes
        if text.isascii():
            self.max_chars = min(self.max_chars, max_bytes)
        else:
            self.bytes = list(accumulate(map(_utf8_len, self.lines), initial=0))

    def fits(self, a: int, b: int) -> bool:
        newlines = b - a - 1
        if self.chars[b] - self.chars[a] + newlines > self.max_chars:
            return False
        return self.bytes is None or self.bytes[b] - self.bytes[a] + newlines <= self.max_bytes

    def text_of(self, a: int, b: int) -> str:
        return self.text[self.chars[a] + a : self.chars[b] + b - 1]

    def blank(self, i: int) -> bool:
        line = self.lines[i]
        return not line or line.isspace()

    def trim(self, a: int, b: int) -> tuple[int, int]:
        """The span without its leading and trailing whitespace-only lines."""
        while a < b and self.blank(a):
            a += 1
        while b > a and self.blank(b - 1):
            b -= 1
        return a, b

    def breaks(self, a: int, b: int) -> list[tuple[int, int]]:
        """Each line ``i`` with ``a < i < b`` that a chunk may start at, with how good a
        boundary just before it is (lower is better). ``[a, b)`` is trimmed: line ``a`` is
        not blank.

        Shallow indentation first (top-level code); then after a blank line, then after
        code, and last right after a comment, decorator or heading (even across blank
        lines), so those stay with what they describe. Never blank lines, never just before
        a closing bracket. One pass over the span, each line stripped once.
        """
        lines, out = self.lines, []
        after_comment = lines[a].lstrip().startswith(_COMMENT_LEADERS)
        gap = False
        for i in range(a + 1, b):
            line = lines[i]
            stripped = line.lstrip()
            if not stripped:
                gap = True
                continue
            if stripped[0] not in ")]}":
                rank = 2 if after_comment else 0 if gap else 1
                out.append((i, min(len(line) - len(stripped), _MAX_INDENT) * 3 + rank))
            after_comment, gap = stripped.startswith(_COMMENT_LEADERS), False
        return out


def _utf8_len(line: str) -> int:
    return len(line) if line.isascii() else len(line.encode("utf-8", "surrogatepass"))


_Piece = tuple[int, int, str | None]
"""Lines ``[a, b)`` of a chunk; the text is set only for a piece of one over-long line."""


def _split(lines: _Lines, a: int, b: int) -> list[_Piece]:
    """Pieces of span ``[a, b)`` within budget, cut at the best boundaries available."""
    a, b = lines.trim(a, b)
    if a == b:
        return []
    if lines.fits(a, b):
        return [(a, b, None)]
    return _split_at(lines, a, b, lines.breaks(a, b))


def _split_at(lines: _Lines, a: int, b: int, candidates: list[tuple[int, int]]) -> list[_Piece]:
    """Cut a trimmed, over-budget span at all of its best-ranked boundaries, then pack.

    Neighbouring pieces that fit are merged greedily while the union still fits; a piece
    that does not fit is cut again at the next-best boundaries it contains. Each level
    removes one boundary rank, so the recursion is at most ~100 deep.
    """
    if not candidates:
        return _pack_lines(lines, a, b)
    best = min(key for _, key in candidates)
    out: list[_Piece] = []
    pending: tuple[int, int] | None = None
    inner: list[tuple[int, int]] = []
    start = a
    for i, key in [*candidates, (b, best)]:
        if key != best:
            inner.append((i, key))
            continue
        p, q = lines.trim(start, i)
        start, sub, inner = i, [c for c in inner if p < c[0] < q], []
        if p == q:
            continue
        if pending is not None and lines.fits(pending[0], q):
            pending = (pending[0], q)
            continue
        if pending is not None:
            out.append((*pending, None))
            pending = None
        if lines.fits(p, q):
            pending = (p, q)
        else:
            out.extend(_split_at(lines, p, q, sub))
    if pending is not None:
        out.append((*pending, None))
    return out


def _pack_lines(lines: _Lines, a: int, b: int) -> list[_Piece]:
    """Greedy line windows for a span with no usable boundary; over-long lines are cut."""
    out: list[_Piece] = []
    start: int | None = None
    for i in range(a, b):
        if not lines.fits(i, i + 1):
            if start is not None:
                out.extend(_trimmed(lines, start, i))
                start = None
            out.extend(_cut_line(lines, i))
        elif start is None:
            start = None if lines.blank(i) else i
        elif not lines.fits(start, i + 1):
            out.extend(_trimmed(lines, start, i))
            start = i
    if start is not None:
        out.extend(_trimmed(lines, start, b))
    return out


def _trimmed(lines: _Lines, a: int, b: int) -> list[_Piece]:
    a, b = lines.trim(a, b)
    return [(a, b, None)] if a < b else []


def _cut_line(lines: _Lines, i: int) -> list[_Piece]:
    """Consecutive pieces of one over-long line, preferring to cut after a space or comma."""
    line, pos = lines.lines[i], 0
    out: list[_Piece] = []
    while pos < len(line):
        end = min(len(line), pos + lines.max_chars)
        size = _utf8_len(line[pos:end])
        while size > lines.max_bytes:
            end = pos + max(1, (end - pos) * lines.max_bytes // size)
            size = _utf8_len(line[pos:end])
        if end < len(line):
            middle = pos + (end - pos) // 2
            cut = max(line.rfind(" ", middle, end), line.rfind(",", middle, end))
            end = cut + 1 if cut > pos else end
        piece = line[pos:end]
        if piece and not piece.isspace():
            out.append((i, i + 1, piece))
        pos = end
    return out


class _Emitter:
    """Collects the chunks of one file; knows its path, language and lines."""

    def __init__(self, path: str, language: str, lines: _Lines) -> None:
        self.path = path
        self.language = language
        self.lines = lines
        self.chunks: list[Chunk] = []

    def reset(self) -> None:
        self.chunks = []

    def span(self, a: int, b: int, symbol: str | None, kind: ChunkKind) -> None:
        """Chunks for lines ``[a, b)``: one if it fits, else pieces that keep symbol and kind."""
        for p, q, piece in _split(self.lines, a, b):
            text = piece if piece is not None else self.lines.text_of(p, q)
            name, chunk_kind = symbol, kind
            if kind == "window" and symbol is None:
                name, chunk_kind = self._window_symbol(text)
            self.chunks.append(Chunk(self.path, self.language, p + 1, q, text, name, chunk_kind))

    def _window_symbol(self, text: str) -> tuple[str | None, ChunkKind]:
        found = find_symbol(text, self.language)
        if found is None:
            return None, "window"
        name, is_class, starts = found
        if not starts:
            return name, "window"
        return name, "class" if is_class else "function"

    def definitions(self, definitions: list[Definition] | None) -> bool:
        """Chunks from the file's outline; False (and nothing emitted) when it has none."""
        if definitions is None:
            return False
        self._body(definitions, 0, len(self.lines.lines), None)
        return True

    def _body(self, definitions: Iterable[Definition], a: int, b: int, owner: str | None) -> None:
        """``definitions`` become their own chunks; the code between them is grouped
        (``module`` chunks at top level, header/attribute chunks of class ``owner`` inside it).
        """
        gap_kind: ChunkKind = "module" if owner is None else "class"
        prefix = "" if owner is None else owner + "."
        cursor = a
        for definition in definitions:
            start, end = self._definition_span(definition, cursor, b)
            self.span(cursor, start, owner, gap_kind)
            self._definition(definition, start, end, prefix)
            cursor = end
        self.span(cursor, b, owner, gap_kind)

    def _definition(self, definition: Definition, a: int, b: int, prefix: str) -> None:
        name = prefix + definition.name
        if not definition.is_class:
            self.span(a, b, name, "method" if prefix else "function")
        elif self.lines.fits(a, b):
            self.span(a, b, name, "class")
        else:
            self._body(definition.members, a, b, name)

    def _definition_span(self, definition: Definition, floor: int, ceiling: int) -> tuple[int, int]:
        """Lines of a definition with its decorators, the comment block right above it, and
        comments indented under its last line; clamped to ``[floor, ceiling)``.
        """
        lines = self.lines.lines
        start = min(max(definition.start, floor), ceiling)
        end = max(min(definition.end, ceiling), start)
        if self.language != "python":  # the syntax outline includes the comments already
            return start, end
        while start > floor and lines[start - 1].lstrip().startswith("#"):
            start -= 1
        while end < ceiling and _is_comment_deeper_than(lines[end], definition.indent):
            end += 1
        return start, end


def _is_comment_deeper_than(line: str, indent: int) -> bool:
    stripped = line.lstrip()
    return stripped.startswith("#") and len(line) - len(stripped) > indent
