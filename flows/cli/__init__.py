"""The ``codeflow`` command line (entry point :func:`flows.cli.commands.main`): the one place
that wires flows, tasks and the realtime server together.

One module per command family (``index_commands``, ``sandbox_commands``, ``serve_commands``,
``repo_commands``, ``cache_commands``), plus the temporary Prefect API the commands start
(``prefect_api``) and the progress bar (``progress``).
"""
