"""Validation of the parameters people type into the Prefect UI (and the command line).

Prefect already checks types against the deployment's schema when a run is created; what it
cannot know is whether ``source`` is a repository codeflow can reach, whether a branch name
is one git accepts, or whether a cron line parses. The flows call these functions first, so a
mistake fails the run at once with one line naming the parameter and what to pass, and that
line is the Failed state's message in the UI::

    Flow run encountered an exception: ParameterError: source: 'htp://x' is neither an
    existing folder nor a git URL (https://, ssh://, git://, file:// or user@host:path)

Pure logic: no prefect, redis or docker imports.

>>> parse_source("https://github.com/PrefectHQ/prefect.git")
Source(kind='url', value='https://github.com/PrefectHQ/prefect.git')
>>> check_branch("feature/x")
'feature/x'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from cronsim import CronSim, CronSimError

from config.errors import ParameterError

URL_SCHEMES = ("https", "http", "ssh", "git", "file")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!//)\S+$")
_TRANSPORT = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")  # git's ext::, fd:: run commands
_BAD_REF = re.compile(r"(^[-/.])|(\.\.)|(@\{)|([\x00-\x20~^:?*\[\\\x7f])|(/\.)|(//)|([/.]$)")
_MAX_BRANCH = 200


@dataclass(frozen=True)
class Source:
    """What to index: a folder on this machine (absolute) or a git URL (as given)."""

    kind: Literal["path", "url"]
    value: str

    @property
    def is_url(self) -> bool:
        return self.kind == "url"


def looks_like_url(value: str) -> bool:
    return bool(_SCHEME.match(value) or _SCP_LIKE.match(value) or _TRANSPORT.match(value))


def parse_source(value: str, *, base: Path | None = None) -> Source:
    """``value`` as a :class:`Source`; relative paths resolve against ``base`` (or the cwd).

    Only the URL's form is checked here (a reachable remote is the clone's business); a path
    must name an existing folder.
    """
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise ParameterError("source: empty; pass a repository folder or a git URL")
    if text.startswith("-"):
        raise ParameterError(f"source: {text!r} starts with '-'; pass a folder or a git URL")
    if looks_like_url(text):
        return Source("url", _check_url(text))
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    if not path.is_dir():
        raise ParameterError(
            f"source: {text!r} is neither an existing folder (looked at {path}) nor a git URL "
            f"({', '.join(s + '://' for s in URL_SCHEMES)} or user@host:path)"
        )
    return Source("path", str(path.resolve()))


def _check_url(url: str) -> str:
    scheme = _SCHEME.match(url)
    if scheme is None:
        if _TRANSPORT.match(url):
            raise ParameterError(f"source: {url!r} uses a git remote helper, which is refused")
        return url  # user@host:path (ssh)
    name = scheme.group(1).lower()
    if name not in URL_SCHEMES:
        raise ParameterError(
            f"source: {url!r} has scheme {name!r}; use one of {', '.join(URL_SCHEMES)}"
        )
    if len(url) <= len(name) + 3:
        raise ParameterError(f"source: {url!r} names no repository")
    return url


def check_branch(branch: str | None) -> str | None:
    """A branch name git would accept (``git check-ref-format --branch``), or ``None``."""
    if branch is None:
        return None
    name = branch.strip()
    if not name:
        return None
    if len(name) > _MAX_BRANCH or _BAD_REF.search(name) or name.endswith(".lock"):
        raise ParameterError(
            f"branch: {branch!r} is not a valid git branch name; pass e.g. 'main' or leave it empty"
        )
    return name


def check_cron(expression: str | None) -> str | None:
    """A five-field cron line (minute hour day month weekday), or ``None``."""
    if expression is None or not expression.strip():
        return None
    text = " ".join(expression.split())
    try:
        CronSim(text, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ParameterError(
            f"schedule: {expression!r} is not a cron line ({exc}); e.g. '*/15 * * * *'"
        ) from None
    return text


def check_names(names: list[str] | None, known: list[str]) -> list[str] | None:
    """Registered names asked for by a sync run; unknown ones are an error listing the known."""
    if not names:
        return None
    unknown = [n for n in names if n not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none registered; see `codeflow repo add`"
        raise ParameterError(f"names: {', '.join(unknown)} not registered (known: {listed})")
    return list(dict.fromkeys(names))
