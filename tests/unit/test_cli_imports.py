"""``build_parser()`` stays light: the heavy libraries load in the command that needs them.

Every ``codeflow`` process builds the parser, and a thin client's whole run is mostly imports.
Only a fresh interpreter shows what an import pulls in, so this runs one.
"""

from __future__ import annotations

import subprocess
import sys

PROBE = (
    "import sys; from flows.cli.commands import build_parser; build_parser(); "
    "print(sorted(m for m in ('redis','git','prefect','lancedb','numpy','pandas','docker',"
    "'tornado','tasks.services','pydantic') if m in sys.modules))"
)


def test_build_parser_imports_no_heavy_library() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
