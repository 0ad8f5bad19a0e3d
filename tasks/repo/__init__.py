"""Repositories: what is in a work tree, and which repositories codeflow keeps fresh.

- :mod:`~tasks.repo.git_repository`: :class:`GitRepository`, the adapter that owns git
  (fingerprints, change detection input, reading files without following links);
- :mod:`~tasks.repo.safe_files`: reading files relative to a directory descriptor;
- :mod:`~tasks.repo.registry`: the registered repositories and the clones of git URLs;
- :mod:`~tasks.repo.source_params` (pure): validating sources, branches, names and crons.
"""
