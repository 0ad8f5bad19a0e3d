"""The on-demand local service: one long-lived process per ``CODEFLOW_HOME`` that keeps warm
what is expensive (a persistent Prefect API, the embedder, open vector tables, Redis
connections, the sandbox's warm pool), so that each ``codeflow`` command is a thin client.

- :mod:`~flows.service.paths`: where the service's socket, lock, state and log live.
- :mod:`~flows.service.client`: the thin client (standard library only): finds or starts the
  service and streams one request's progress and result back.
- :mod:`~flows.service.operations`: what a request does (index, search, related, status,
  sandbox run), shared by the command line's socket, the MCP tools and the in-process path.
- :mod:`~flows.service.local_api`: the Unix-socket API the client speaks (NDJSON replies).
- :mod:`~flows.service.prefect_server`: the persistent local Prefect API and its UI.
- :mod:`~flows.service.mcp_tools`: the MCP server for agents (stdio and streamable HTTP).
- :mod:`~flows.service.daemon`: the process itself (``python -m flows.service``).
"""
