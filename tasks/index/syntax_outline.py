"""The outline of a source file in any language with a tree-sitter grammar on PyPI: its
definitions (functions, methods, classes, structs, impls, interfaces, modules) with the
lines each one spans, including the doc comments and attributes right above it.

It yields the same :class:`~tasks.index.python_outline.Definition` tree as the Python
outline, so the chunker treats every language alike: a definition is a unit (a class that
does not fit is cut into its members), the code between definitions is grouped.

Grammars come from the per-language wheels (``tree-sitter-go``, ``tree-sitter-rust`` ...),
compiled into the wheel: nothing is downloaded. A grammar is loaded on first use; a
language whose wheel is missing has no outline, and its files are cut by the generic
splitter.

>>> [(d.name, d.start, d.end) for d in outline("func (c *Ctx) JSON() {}\\n", "go")]
[('Ctx.JSON', 0, 1)]
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from tasks.index.python_outline import Definition

__all__ = ["LANGUAGES", "outline"]

Node = Any  # tree_sitter.Node: the package is imported lazily


@dataclass(frozen=True)
class Grammar:
    """How to read one language's syntax tree as definitions.

    ``leaves`` are definitions without members (functions, methods); ``containers`` have
    members (classes, impls); ``units`` are type definitions kept whole (structs, enums,
    interfaces); ``transparent`` nodes are looked through (exports, templates, namespaces,
    preprocessor blocks); ``attached`` nodes right above a definition belong to it (doc
    comments, attributes, decorators).
    """

    module: str
    entry: str = "language"
    leaves: frozenset[str] = frozenset()
    containers: frozenset[str] = frozenset()
    units: frozenset[str] = frozenset()
    transparent: frozenset[str] = frozenset()
    attached: frozenset[str] = frozenset({"comment"})
    #: Nodes that wrap one definition and start where it starts for the reader
    #: (``export class``, ``template <...> class``): the definition's span starts with them.
    wrappers: frozenset[str] = frozenset()
    #: How to name a definition by node type (default: its ``name`` field).
    namers: Mapping[str, Callable[[Node], str | None]] = field(default_factory=dict, compare=False)
    #: Names other nodes that define something (JavaScript's ``x = function``), or None.
    special: Callable[[Node], str | None] | None = field(default=None, compare=False)

    def name(self, node: Node) -> str | None:
        return self.namers.get(node.type, _named)(node)


def _text(node: Node | None) -> str | None:
    return node.text.decode("utf-8", "replace") if node is not None else None


def _named(node: Node) -> str | None:
    return _text(node.child_by_field_name("name"))


def _c_name(node: Node) -> str | None:
    """The name in a C/C++ declarator chain: ``*f(...)`` -> ``f``, ``A::f`` -> ``A::f``."""
    declarator = node.child_by_field_name("declarator")
    while declarator is not None:
        if declarator.type in {
            "identifier",
            "field_identifier",
            "qualified_identifier",
            "destructor_name",
            "operator_name",
            "type_identifier",
        }:
            return _text(declarator)
        declarator = declarator.child_by_field_name("declarator")
    return None


def _go_method(node: Node) -> str | None:
    receiver = node.child_by_field_name("receiver")
    name = _named(node)
    kinds = {"type_identifier", "generic_type"}
    owner = next((n for n in _walk(receiver) if n.type in kinds), None) if receiver else None
    owner_name = _text(owner.child_by_field_name("type") or owner) if owner else None
    return f"{owner_name}.{name}" if owner_name and name else name


def _rust_impl(node: Node) -> str | None:
    return _text(node.child_by_field_name("type"))


def _go_type(node: Node) -> str | None:
    spec = next((c for c in node.named_children if c.type in {"type_spec", "type_alias"}), None)
    return _named(spec) if spec is not None else None


def _c_type(node: Node) -> str | None:
    """A struct, union or enum with a body, or a typedef: its name."""
    if node.type == "type_definition":
        return _c_name(node)
    return _named(node) if node.child_by_field_name("body") is not None else None


def _js_function_value(node: Node) -> str | None:
    """``name = function ...`` / ``const name = () => ...``: the name, else None."""
    functions = {"function_expression", "function", "arrow_function", "generator_function"}
    if node.type == "expression_statement":
        node = node.named_children[0] if node.named_children else node
        if node.type == "assignment_expression":
            right = node.child_by_field_name("right")
            return (
                _text(node.child_by_field_name("left"))
                if right and right.type in functions
                else None
            )
        return None
    for declarator in node.named_children:
        value = declarator.child_by_field_name("value")
        if declarator.type == "variable_declarator" and value and value.type in functions:
            return _named(declarator)
    return None


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.named_children:
        yield from _walk(child)


def _set(*names: str) -> frozenset[str]:
    return frozenset(names)


_C_LIKE = _set("preproc_if", "preproc_ifdef", "preproc_else", "preproc_elif")
_C_UNITS = _set("struct_specifier", "enum_specifier", "union_specifier", "type_definition")
_JS_TRANSPARENT = _set("export_statement", "ambient_declaration", "internal_module", "module")
_JS_LEAVES = _set("function_declaration", "generator_function_declaration", "method_definition")
_JS_CLASSES = _set("class_declaration", "abstract_class_declaration", "class")
_TS_UNITS = _set("interface_declaration", "type_alias_declaration", "enum_declaration")
_CS_LEAVES = _set("method_declaration", "constructor_declaration", "operator_declaration")
_CS_LEAVES |= {"property_declaration", "destructor_declaration", "local_function_statement"}
_TS_LEAVES = _JS_LEAVES | {"function_signature", "abstract_method_signature"}


def _typescript(entry: str) -> Grammar:
    return Grammar(
        "tree_sitter_typescript",
        entry,
        leaves=_TS_LEAVES,
        containers=_JS_CLASSES,
        units=_TS_UNITS,
        transparent=_JS_TRANSPARENT,
        attached=_set("comment", "decorator"),
        wrappers=_set("export_statement"),
        special=_js_function_value,
    )


LANGUAGES: dict[str, Grammar] = {
    "javascript": Grammar(
        "tree_sitter_javascript",
        leaves=_JS_LEAVES,
        containers=_JS_CLASSES,
        transparent=_JS_TRANSPARENT,
        wrappers=_set("export_statement"),
        special=_js_function_value,
    ),
    "typescript": _typescript("language_typescript"),
    "tsx": _typescript("language_tsx"),
    "go": Grammar(
        "tree_sitter_go",
        leaves=_set("function_declaration", "method_declaration"),
        units=_set("type_declaration"),
        namers={"method_declaration": _go_method, "type_declaration": _go_type},
    ),
    "rust": Grammar(
        "tree_sitter_rust",
        leaves=_set("function_item", "macro_definition", "function_signature_item"),
        containers=_set("impl_item", "trait_item", "mod_item"),
        units=_set("struct_item", "enum_item", "union_item", "type_item"),
        attached=_set("line_comment", "block_comment", "attribute_item"),
        namers={"impl_item": _rust_impl},
    ),
    "java": Grammar(
        "tree_sitter_java",
        leaves=_set("method_declaration", "constructor_declaration"),
        containers=_set(
            "class_declaration", "interface_declaration", "enum_declaration", "record_declaration"
        ),
        transparent=_set("enum_body_declarations"),
        attached=_set("line_comment", "block_comment"),
    ),
    "csharp": Grammar(
        "tree_sitter_c_sharp",
        leaves=_CS_LEAVES,
        containers=_set(
            "class_declaration", "struct_declaration", "interface_declaration", "record_declaration"
        ),
        units=_set("enum_declaration", "delegate_declaration"),
        transparent=_set("namespace_declaration", "file_scoped_namespace_declaration"),
    ),
    "ruby": Grammar(
        "tree_sitter_ruby",
        leaves=_set("method", "singleton_method"),
        containers=_set("class", "module", "singleton_class"),
    ),
    "php": Grammar(
        "tree_sitter_php",
        "language_php",
        leaves=_set("method_declaration", "function_definition"),
        containers=_set(
            "class_declaration", "interface_declaration", "trait_declaration", "enum_declaration"
        ),
        transparent=_set("namespace_definition"),
    ),
    "c": Grammar(
        "tree_sitter_c",
        leaves=_set("function_definition", "preproc_function_def"),
        units=_C_UNITS,
        transparent=_C_LIKE,
        namers={"function_definition": _c_name} | dict.fromkeys(_C_UNITS, _c_type),
    ),
    "cpp": Grammar(
        "tree_sitter_cpp",
        leaves=_set("function_definition", "preproc_function_def"),
        containers=_set("class_specifier", "struct_specifier", "union_specifier"),
        units=_set("enum_specifier", "alias_declaration", "concept_definition"),
        transparent=_C_LIKE
        | {"template_declaration", "namespace_definition", "linkage_specification"},
        wrappers=_set("template_declaration"),
        namers={"function_definition": _c_name, "enum_specifier": _c_type},
    ),
}
_BODIES = _set(
    "class_body", "declaration_list", "field_declaration_list", "interface_body", "enum_body",
    "body_statement", "statement_block",
)  # fmt: skip


@cache
def _parser(language: str) -> Any:
    """A parser for ``language``, or None when its grammar wheel is not installed."""
    grammar = LANGUAGES[language]
    try:
        import tree_sitter

        module = importlib.import_module(grammar.module)
    except ImportError:
        return None
    return tree_sitter.Parser(tree_sitter.Language(getattr(module, grammar.entry)()))


def outline(text: str, language: str) -> list[Definition] | None:
    """Top-level definitions of ``text`` (``\\n`` newlines), or None when ``language`` has no
    grammar here. A file with syntax errors still has an outline: tree-sitter recovers,
    and what it could not read is left to the generic splitter."""
    if language not in LANGUAGES:
        return None
    parser = _parser(language)
    if parser is None:
        return None
    tree = parser.parse(text.encode("utf-8", "surrogatepass"))
    return _Reader(LANGUAGES[language]).members(tree.root_node)


class _Reader:
    def __init__(self, grammar: Grammar) -> None:
        self.grammar = grammar

    def members(self, node: Node) -> list[Definition]:
        found: list[Definition] = []
        for child in node.named_children:
            found.extend(self.definitions(child))
        return found

    def definitions(self, node: Node) -> list[Definition]:
        kind, grammar = node.type, self.grammar
        if kind in grammar.transparent:
            return self.members(_body(node) or node)
        if kind in grammar.leaves or kind in grammar.units:
            return self._one(node, grammar.name(node), is_class=kind in grammar.units)
        if kind in grammar.containers:
            body = _body(node)
            if body is None and kind in {"struct_specifier", "class_specifier"}:
                return []  # a forward declaration or a type use, not a definition
            members = tuple(self.members(body)) if body is not None else ()
            return self._one(node, grammar.name(node), True, members)
        if grammar.special is not None:
            return self._one(node, grammar.special(node), is_class=False)
        return []

    def _one(
        self, node: Node, name: str | None, is_class: bool, members: tuple[Definition, ...] = ()
    ) -> list[Definition]:
        name = _clean(name)
        if not name:
            return []
        anchor = node
        while anchor.parent is not None and anchor.parent.type in self.grammar.wrappers:
            anchor = anchor.parent
        start = _attached_start(anchor, self.grammar.attached)
        end = node.end_point.row + (1 if node.end_point.column > 0 else 0)
        indent = node.start_point.column
        return [Definition(name, is_class, start, max(end, start + 1), indent, members)]


def _clean(name: str | None) -> str | None:
    """One line, without generic or template arguments: ``type_caster<CharT, ...>`` is
    ``type_caster`` (``operator<`` keeps its name)."""
    if not name:
        return None
    name = " ".join(name.split())
    cut = name.find("<")
    return name[:cut].rstrip() if cut > 0 and not name.startswith("operator") else name


def _body(node: Node) -> Node | None:
    body = node.child_by_field_name("body")
    if body is not None:
        return body
    return next((child for child in node.named_children if child.type in _BODIES), None)


def _attached_start(node: Node, attached: frozenset[str]) -> int:
    """The first line of the doc comments and attributes right above ``node`` (a comment
    before the first statement of a body may sit just outside it, as in Ruby)."""
    start = int(node.start_point.row)
    previous = _before(node)
    while (
        previous is not None and previous.type in attached and previous.end_point.row >= start - 1
    ):
        start = int(previous.start_point.row)
        previous = _before(previous)
    return start


def _before(node: Node) -> Node | None:
    previous = node.prev_named_sibling
    parent = node.parent
    if previous is None and parent is not None and parent.type in _BODIES:
        return parent.prev_named_sibling
    return previous
