"""Indexing logic, pure: what a file is, how it is cut into chunks, what changed, what the
next manifest says.

- :mod:`~tasks.index.languages`: language by path, and which files are worth indexing;
- :mod:`~tasks.index.chunking` with :mod:`~tasks.index.python_outline`: syntax-aware chunks;
- :mod:`~tasks.index.changes`: added, modified, deleted and renamed files from two manifests;
- :mod:`~tasks.index.plans`: what to sweep, and the manifest after a run;
- :mod:`~tasks.index.manifests`: the committed manifests, one JSON file per repo + branch.
"""
