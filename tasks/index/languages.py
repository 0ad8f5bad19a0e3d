"""Which language a file is, and whether it is worth indexing at all.

Everything here is decided from the path or from a cheap look at the bytes/text, so the
loader can skip a file before it costs anything (a ``node_modules/`` tree is never read; a
PNG is never decoded). Used by :mod:`tasks.index.chunking`; no I/O, no third-party imports.

The skip reasons form a small fixed vocabulary (reports group files by it)::

    binary     NUL bytes / mostly control bytes, or a known binary extension
    minified   very long average line in a JS/CSS/JSON-like file, or ``*.min.js``
    generated  lock files, protobuf/gRPC output, "Code generated ... DO NOT EDIT" headers
    vendored   third-party trees: node_modules/, vendor/, third_party/, site-packages/ ...
    oversized  larger than the policy's ``max_file_bytes``
    empty      nothing but whitespace
    ignored    matched one of the caller's ignore globs
"""

from __future__ import annotations

import codecs
import fnmatch
import re
from functools import lru_cache
from typing import Literal

SkipReason = Literal["binary", "minified", "generated", "vendored", "oversized", "empty", "ignored"]

_EXTENSIONS: dict[str, str] = {
    **dict.fromkeys((".py", ".pyi", ".pyw"), "python"),
    **dict.fromkeys((".js", ".mjs", ".cjs", ".jsx"), "javascript"),
    **dict.fromkeys((".ts", ".tsx", ".mts", ".cts"), "typescript"),
    **dict.fromkeys((".c", ".h"), "c"),
    **dict.fromkeys((".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx", ".ipp"), "cpp"),
    **dict.fromkeys((".kt", ".kts"), "kotlin"),
    **dict.fromkeys((".sh", ".bash", ".zsh", ".fish"), "shell"),
    **dict.fromkeys((".pl", ".pm"), "perl"),
    **dict.fromkeys((".ex", ".exs"), "elixir"),
    **dict.fromkeys((".html", ".htm", ".xhtml"), "html"),
    **dict.fromkeys((".md", ".markdown", ".mdx"), "markdown"),
    **dict.fromkeys((".yaml", ".yml"), "yaml"),
    **dict.fromkeys((".json", ".jsonc", ".json5", ".ipynb"), "json"),
    **dict.fromkeys((".xml", ".xsd", ".xsl", ".plist"), "xml"),
    **dict.fromkeys((".ini", ".cfg", ".conf"), "ini"),
    **dict.fromkeys((".tf", ".hcl"), "hcl"),
    ".go": "go", ".rs": "rust", ".java": "java", ".scala": "scala", ".cs": "csharp",
    ".rb": "ruby", ".php": "php", ".swift": "swift", ".m": "objective-c", ".mm": "objective-c",
    ".lua": "lua", ".r": "r", ".jl": "julia", ".dart": "dart", ".erl": "erlang",
    ".hs": "haskell", ".ml": "ocaml", ".clj": "clojure", ".sql": "sql", ".vue": "vue",
    ".svelte": "svelte", ".css": "css", ".scss": "scss", ".sass": "sass", ".less": "less",
    ".svg": "svg", ".toml": "toml", ".rst": "rst", ".txt": "text", ".proto": "protobuf",
    ".graphql": "graphql", ".gql": "graphql", ".ps1": "powershell", ".groovy": "groovy",
    ".gradle": "groovy", ".bzl": "starlark", ".cmake": "cmake", ".dockerfile": "dockerfile",
    ".zig": "zig", ".nim": "nim", ".v": "verilog", ".tex": "latex", ".csv": "csv",
}  # fmt: skip

_FILENAMES: dict[str, str] = {
    "dockerfile": "dockerfile", "containerfile": "dockerfile", "makefile": "make",
    "gnumakefile": "make", "cmakelists.txt": "cmake", "gemfile": "ruby", "rakefile": "ruby",
    "jenkinsfile": "groovy", "build": "starlark", "build.bazel": "starlark",
    "workspace": "starlark", "justfile": "make", "vagrantfile": "ruby",
}  # fmt: skip

_SHEBANGS: tuple[tuple[str, str], ...] = (
    ("python", "python"), ("node", "javascript"), ("deno", "typescript"), ("bash", "shell"),
    ("zsh", "shell"), ("/sh", "shell"), ("ruby", "ruby"), ("perl", "perl"), ("php", "php"),
)  # fmt: skip

_MINIFIABLE = frozenset(
    {"javascript", "typescript", "css", "scss", "less", "json", "html", "xml", "svg"}
)

_VENDORED_DIRS = frozenset(
    {"node_modules", "bower_components", "jspm_packages", "vendor", "vendors", "third_party",
     "third-party", "thirdparty", "site-packages", "dist-packages", ".venv",
     ".yarn", ".pnpm-store", "Pods", "Carthage", ".bundle", ".git", ".hg", ".svn"}
)  # fmt: skip
_GENERATED_DIRS = frozenset(
    {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox", ".eggs",
     ".next", ".nuxt", ".svelte-kit", ".gradle", ".terraform", ".idea", ".parcel-cache"}
)  # fmt: skip
_LOCK_FILES = frozenset(
    {"package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "poetry.lock",
     "pipfile.lock", "cargo.lock", "composer.lock", "gemfile.lock", "go.sum", "uv.lock",
     "pdm.lock", "flake.lock", "packages.lock.json", "mix.lock", "pubspec.lock",
     "podfile.lock", "bun.lockb", "gradle.lockfile", "deno.lock"}
)  # fmt: skip
_GENERATED_SUFFIXES = (
    "_pb2.py", "_pb2.pyi", "_pb2_grpc.py", ".pb.go", ".pb.gw.go", ".pb.cc", ".pb.h", "_pb.js",
    "_pb.d.ts", "_grpc_pb.js", ".g.dart", ".freezed.dart", ".designer.cs", ".generated.cs",
    ".js.map", ".css.map", ".min.map",
)  # fmt: skip
_MINIFIED_SUFFIXES = (".min.js", ".min.mjs", ".min.cjs", ".min.css", "-min.js", ".bundle.js")
_BINARY_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".icns", ".webp", ".tif", ".tiff",
     ".psd", ".pdf", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".tar",
     ".whl", ".egg", ".jar", ".war", ".class", ".pyc", ".pyo", ".pyd", ".so", ".dylib", ".dll",
     ".exe", ".o", ".a", ".lib", ".obj", ".bin", ".dat", ".woff", ".woff2", ".ttf", ".otf",
     ".eot", ".mp3", ".mp4", ".m4a", ".wav", ".flac", ".ogg", ".webm", ".avi", ".mov", ".mkv",
     ".sqlite", ".sqlite3", ".db", ".npy", ".npz", ".pkl", ".pickle", ".parquet", ".feather",
     ".arrow", ".h5", ".hdf5", ".onnx", ".pt", ".pth", ".safetensors", ".ckpt", ".xlsx",
     ".xls", ".docx", ".doc", ".pptx", ".ppt", ".iso", ".dmg", ".deb", ".rpm", ".lockb"}
)  # fmt: skip

_GENERATED_MARKER = re.compile(
    r"""^[ \t]*(?:\#|//|/\*|\*|--|<!--|;|%|\{\{|\"\"\"|''')[^\n]*?"""
    r"(?:@generated\b|\bDO NOT EDIT\b|\bCode generated by\b|<auto-generated"
    r"|generated by the protocol buffer compiler"
    r"|(?i:\bauto-?generated (?:file|code|by)\b|\bthis file (?:is|was|has been) (?:automatically "
    r"|auto-?)?generated\b))",
    re.MULTILINE,
)
_CODING_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.MULTILINE)
_TEXT_BYTES = bytes({7, 8, 9, 10, 11, 12, 13, 27} | (set(range(0x20, 0x100)) - {0x7F}))


def detect_language(path: str) -> str:
    """Language of ``path`` from its file name or extension; ``"text"`` when unknown.

    >>> detect_language("src/app/main.TS"), detect_language("Dockerfile")
    ('typescript', 'dockerfile')
    """
    name = path.rpartition("/")[2].lower()
    if name in _FILENAMES:
        return _FILENAMES[name]
    if name.startswith("dockerfile."):
        return "dockerfile"
    dot = name.rfind(".")
    if dot <= 0:
        return "text"
    return _EXTENSIONS.get(name[dot:], "text")


def language_from_shebang(first_line: str) -> str | None:
    """Language named by a ``#!`` line (extension-less scripts), or None."""
    if not first_line.startswith("#!"):
        return None
    for needle, language in _SHEBANGS:
        if needle in first_line:
            return language
    return None


def path_skip_reason(path: str, ignore_globs: tuple[str, ...] = ()) -> SkipReason | None:
    """Why ``path`` (repo-relative, ``/``-separated) should not be read at all, or None."""
    directory, _, name = path.rpartition("/")
    reason = _directory_reason(directory.split("/")) if directory else None
    if reason is None:
        reason = _name_reason(name.lower())
    if reason is None and ignore_globs and _glob_matcher(ignore_globs).match(path):
        reason = "ignored"
    return reason


def _directory_reason(parts: list[str]) -> SkipReason | None:
    for part in parts:
        if part in _VENDORED_DIRS:
            return "vendored"
        if part in _GENERATED_DIRS or part.endswith(".egg-info"):
            return "generated"
    return None


def _name_reason(name: str) -> SkipReason | None:
    if name in _LOCK_FILES or name.endswith(_GENERATED_SUFFIXES):
        return "generated"
    if name.endswith(_MINIFIED_SUFFIXES):
        return "minified"
    dot = name.rfind(".")
    if dot > 0 and name[dot:] in _BINARY_EXTENSIONS:
        return "binary"
    return None


@lru_cache(maxsize=32)
def _glob_matcher(globs: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for all globs: a glob without ``/`` matches any path component."""
    alternatives = []
    for glob in globs:
        body = fnmatch.translate(glob.strip("/")).removeprefix("(?s:").removesuffix(")\\Z")
        alternatives.append(f"(?:.*/)?{body}(?:/.*)?" if "/" not in glob else f"{body}(?:/.*)?")
    return re.compile(f"(?s:{'|'.join(alternatives)})\\Z")


def looks_binary(data: bytes, sample_bytes: int, control_ratio: float) -> bool:
    """NUL bytes, or mostly control bytes, in the first ``sample_bytes`` (UTF-16 is text)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    sample = data[:sample_bytes]
    if not sample:
        return False
    if b"\0" in sample:
        return True
    return len(sample.translate(None, _TEXT_BYTES)) > control_ratio * len(sample)


def looks_minified(text: str, language: str, avg_line_chars: int, min_chars: int) -> bool:
    """A long web/data file whose average line is longer than any human writes."""
    if language not in _MINIFIABLE or len(text) < min_chars:
        return False
    return len(text) > avg_line_chars * (text.count("\n") + 1)


def has_generated_marker(text: str, scan_lines: int) -> bool:
    """A "generated, do not edit" comment in the first ``scan_lines`` lines."""
    head = "\n".join(text[: 200 * scan_lines].split("\n", scan_lines)[:scan_lines])
    return _GENERATED_MARKER.search(head) is not None


def decode_source(data: bytes) -> str:
    """Text of a source file; one bad byte never loses the file.

    UTF-8 (BOM stripped) first; UTF-16 when it carries a BOM; otherwise the encoding named
    by a PEP 263 / Emacs ``coding:`` cookie, and U+FFFD for whatever still does not decode.
    Newlines are normalised to ``\\n`` (CRLF and lone CR), so line numbers match editors.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = data.decode("utf-16", "replace")
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode(_cookie_encoding(data[:1024]) or "utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _cookie_encoding(head: bytes) -> str | None:
    """The text encoding named in the first two lines, if Python knows it."""
    match = _CODING_COOKIE.search(b"\n".join(head.split(b"\n", 2)[:2]))
    if match is None:
        return None
    try:
        info = codecs.lookup(match.group(1).decode("ascii"))
    except (LookupError, UnicodeDecodeError):
        return None
    return info.name if getattr(info, "_is_text_encoding", True) else None


# In these templates a space stands for ``[ \t]+`` and ``~`` for ``[ \t]*`` (see _compile).
_FN_MODS = "(?:(?:public|private|protected|internal|static|final|abstract|synchronized|override"
_FN_MODS += "|virtual|async|open|suspend|inline) )"
_CLS_MODS = "(?:(?:public|private|protected|internal|static|final|abstract|sealed|open|data"
_CLS_MODS += "|partial) )"
_JS_EXPORT = "^(?:export (?:default )?)?(?:declare )?"
_JS = (
    _JS_EXPORT + r"(?:async )?function~\*?~(?P<fn>[\w$]+)"
    "|" + _JS_EXPORT + r"(?:abstract )?(?:class|interface|enum) (?P<cls>[\w$]+)"
    r"|^(?:export )?(?:const|let|var) (?P<fn2>[\w$]+)~=~(?:async )?"
    r"(?:function\b|\([^)\n]*\)~=>|[\w$]+~=>)"
)
_RUST_VIS = r"(?:pub(?:\([^)\n]*\))? )?"
_SYMBOL_SOURCES: dict[str, str] = {
    "python": r"^(?:async )?def (?P<fn>\w+)|^class (?P<cls>\w+)",
    "javascript": _JS,
    "typescript": _JS,
    "go": r"^func (?:\([^)\n]*\)~)?(?P<fn>\w+)|^type (?P<cls>\w+) (?:struct|interface)\b",
    "rust": (
        r"^[\t\x20]{0,4}" + _RUST_VIS + r'(?:(?:async|const|unsafe|extern "[^"\n]*") )*'
        r"fn (?P<fn>\w+)|^" + _RUST_VIS + r"(?:struct|enum|trait|union) (?P<cls>\w+)"
        r"|^impl(?:<[^>\n]*>)? (?:[\w:]+(?:<[^>\n]*>)? for )?(?P<cls2>\w+)"
    ),
    "java": (
        r"^[\t\x20]{0,4}" + _CLS_MODS + r"*(?:class|interface|enum|record|@interface) (?P<cls>\w+)"
        r"|^[\t\x20]{0,8}" + _FN_MODS + r"+(?:<[^>\n]*> )?[\w<>\[\].,?]+ (?P<fn>\w+)~\("
    ),
    "kotlin": (
        r"^[\t\x20]{0,4}" + _CLS_MODS + r"*(?:class|interface|object|enum class) (?P<cls>\w+)"
        r"|^[\t\x20]{0,8}" + _FN_MODS + r"*fun (?:<[^>\n]*>~)?(?:[\w.]+\.)?(?P<fn>\w+)"
    ),
    "csharp": (
        r"^[\t\x20]{0,8}" + _CLS_MODS + r"*(?:class|interface|enum|record|struct) (?P<cls>\w+)"
        r"|^[\t\x20]{0,12}" + _FN_MODS + r"+(?:<[^>\n]*> )?[\w<>\[\].,?]+ (?P<fn>\w+)~[(<]"
    ),
    "ruby": r"^~def (?:self\.)?(?P<fn>[\w?!=]+)|^~(?:class|module) (?P<cls>[\w:]+)",
    "php": (
        r"^~(?:(?:public|private|protected|static|final|abstract) )*function (?P<fn>\w+)"
        r"|^~(?:(?:final|abstract) )?(?:class|interface|trait|enum) (?P<cls>\w+)"
    ),
    "swift": (
        r"^~(?:(?:public|private|internal|open|static|final|override|@\w+) )*func (?P<fn>\w+)"
        r"|^~(?:(?:public|private|internal|open|final) )*"
        r"(?:class|struct|protocol|enum|extension) (?P<cls>\w+)"
    ),
    "scala": (
        r"^~(?:(?:private|protected|override|final) )*def (?P<fn>\w+)"
        r"|^~(?:(?:case|abstract|sealed|final) )*(?:class|object|trait) (?P<cls>\w+)"
    ),
    "c": (
        r"^(?:struct|union|enum) (?P<cls>\w+)~\{"
        r"|^[A-Za-z_][\w\t\x20*]{0,80}?[\t\x20*](?P<fn>[A-Za-z_]\w*)~\([^;\n]*$"
    ),
    "cpp": (
        r"^(?:template~<[^>\n]*>~)?(?:class|struct|union|enum(?: class)?|namespace) (?P<cls>\w+)"
        r"|^[A-Za-z_][\w\t\x20*&:<>,]{0,80}?[\t\x20*&:](?P<fn>[A-Za-z_\x7e]\w*)~\([^;\n]*$"
    ),
}


def _compile(template: str) -> re.Pattern[str]:
    return re.compile(template.replace(" ", r"[ \t]+").replace("~", r"[ \t]*"), re.MULTILINE)


_SYMBOL_PATTERNS = {lang: _compile(src) for lang, src in _SYMBOL_SOURCES.items()}
_PREAMBLE = ("#", "//", "/*", "*", "@", "--", "///", "<!--", "[")


def find_symbol(text: str, language: str) -> tuple[str, bool, bool] | None:
    """First definition in a chunk of ``text``: (name, is_class, starts_the_chunk), or None.

    A cheap regex over definition lines (``def``/``class``/``function``/``func``/``fn``...),
    good enough to name a window; ``starts_the_chunk`` means only comments, decorators or
    annotations come before it, so the chunk *is* that definition.
    """
    pattern = _SYMBOL_PATTERNS.get(language)
    match = pattern.search(text) if pattern is not None else None
    if match is None:
        return None
    group, name = next((g, v) for g, v in match.groupdict().items() if v is not None)
    preamble = text[: match.start()].split("\n")[:-1]
    starts = all(not ln.strip() or ln.lstrip().startswith(_PREAMBLE) for ln in preamble)
    return name, group.startswith("cls"), starts
