"""The AST pre-validation policy: a courtesy layer, tested as one (the container is the boundary).

Every classic filter bypass that the adversarial suite runs with this layer OFF must be
reported here with the layer ON.
"""

from __future__ import annotations

import pytest

from tasks.sandbox.models import Violation
from tasks.sandbox.policy import DEFAULT_POLICY, Policy, check_code

BYPASSES = {
    "subclass walking": "().__class__.__base__.__subclasses__()",
    "subclass walking via mro": "x = ''.__class__.__mro__[1].__subclasses__()",
    "getattr with built strings": "name = '__cla' + 'ss__'\nk = getattr((), name)",
    "getattr of a literal dunder": "k = getattr((), '__class__')",
    "__import__": "m = __import__('o' + 's')",
    "importlib": "import importlib\nm = importlib.import_module('os')",
    "from importlib": "from importlib import import_module",
    "ctypes": "import ctypes\nctypes.CDLL(None)",
    "pickle": "import pickle\npickle.loads(b'')",
    "marshal": "import marshal\nmarshal.loads(b'')",
    "utf-7 source encoding": "# -*- coding: utf-7 -*-\n+AGk-mport os",
    "latin-1 declaration on line 2": "#!/usr/bin/env python3\n# vim: set fileencoding=latin-1 :\n",
    "full-width eval": "\uff45\uff56\uff41\uff4c('1 + 1')",
    "full-width dunder": "x = ().__\uff43lass__",
    "decorator exec": "@exec\n@lambda _: 'import os'\nclass X: pass",
    "decorator string method": "@'import os'.format\ndef f(): pass",
    "format-string attribute access": "'{0.__class__.__base__}'.format(0)",
    "format-string nested in spec": "'{0:{1.__globals__}}'.format(0, f)",
    "eval alias": "run = eval\nrun('1')",
    "exec": "exec('import os')",
    "compile": "compile('1', '<s>', 'eval')",
    "globals": "globals()['__builtins__']",
    "builtins name": "__builtins__.__dict__['eval']",
    "frame walking": "import sys\nsys._getframe().f_back.f_globals",
    "generator frame": "g = (i for i in [1])\ng.gi_frame.f_globals",
    "sys.modules": "import sys\nsys.modules['os']",
    "subprocess": "import subprocess\nsubprocess.run(['id'])",
    "socket": "import socket",
    "os.path submodule": "import os.path",
    "from os import": "from os import system",
    "breakpoint": "breakpoint()",
}

ALLOWED = {
    "hello": "print('hi')",
    "stdlib maths": "import math, json, re, collections\nprint(math.sqrt(2), json.dumps([1]))",
    "read input": "import sys\ndata = sys.stdin.read()\nprint(open('data.csv').read())",
    "classes": "class A:\n    def __init__(self):\n        super().__init__()\n"
    "    def __repr__(self):\n        return type(self).__name__",
    "format spec": "print('{0:.2f} {name}'.format(3.14159, name='x'), f'{1 + 1}')",
    "decorators": "import functools\n@functools.lru_cache(maxsize=None)\ndef f(x): return x\n"
    "@property\ndef g(self): return 1",
    "utf-8 declaration": "# -*- coding: utf-8 -*-\nprint('ok')",
    "non-ascii identifier": "caf\u00e9 = 1\nprint(caf\u00e9)",
    "getattr literal": "import math\nprint(getattr(math, 'pi'))",
}


@pytest.mark.parametrize("source", BYPASSES.values(), ids=BYPASSES.keys())
def test_every_classic_bypass_is_reported(source: str) -> None:
    violations = check_code(source)
    assert violations, f"not reported: {source!r}"
    assert all(isinstance(v, Violation) and v.line >= 1 and v.message for v in violations)


@pytest.mark.parametrize("source", ALLOWED.values(), ids=ALLOWED.keys())
def test_ordinary_programs_pass(source: str) -> None:
    assert check_code(source) == []


def test_violation_names_rule_line_and_column() -> None:
    violations = check_code("x = 1\nimport subprocess\ny = eval('2')\n")
    assert [(v.line, v.col, v.rule) for v in violations] == [(2, 0, "import"), (3, 4, "call")]
    assert "subprocess" in violations[0].message
    assert str(violations[1]) == "line 3, col 4: use of eval() is not allowed [call]"


def test_syntax_error_fails_closed_with_line_and_message() -> None:
    violations = check_code("print('a')\ndef broken(:\n    pass\n")
    assert len(violations) == 1
    assert violations[0].rule == "syntax"
    assert violations[0].line == 2
    assert violations[0].message.startswith("invalid Python:")


def test_null_byte_fails_closed() -> None:
    assert [v.rule for v in check_code("print(1)\x00")] == ["syntax"]


def test_encoding_cookie_is_only_honoured_on_the_first_two_lines() -> None:
    assert check_code("x = 1\ny = 2\n# coding: utf-7\n") == []


def test_attribute_violation_points_at_the_attribute() -> None:
    (violation,) = check_code("value = obj.__dict__")
    assert (violation.line, violation.col, violation.rule) == (1, 12, "dunder")


def test_dynamic_getattr_is_reported_even_for_harmless_targets() -> None:
    (violation,) = check_code("import math\nname = 'pi'\nprint(getattr(math, name))")
    assert violation.rule == "dynamic-attribute"


def test_policy_is_configurable() -> None:
    strict = Policy(denied_modules=DEFAULT_POLICY.denied_modules | {"json"})
    assert check_code("import json") == []
    assert [v.rule for v in check_code("import json", strict)] == ["import"]


def test_violations_serialize_to_plain_dicts() -> None:
    (violation,) = check_code("import os")
    assert violation.to_dict() == {
        "line": 1,
        "col": 0,
        "rule": "import",
        "message": "import of 'os' is not allowed",
    }


def test_module_docstring_says_it_is_not_the_boundary() -> None:
    import tasks.sandbox.policy as policy

    assert policy.__doc__ is not None
    assert "NOT a security boundary" in policy.__doc__
