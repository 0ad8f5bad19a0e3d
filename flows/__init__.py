"""Prefect flows, one module per pipeline (``vectorize``, ``sandbox_run``, ``sync``), and the
``codeflow`` command line (``flows/cli``)."""
