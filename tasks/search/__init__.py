"""Search: hybrid retrieval over an indexed repository.

- :mod:`~tasks.search.hybrid`: BM25 over code tokens + vector similarity, fused;
- :mod:`~tasks.search.ranking`: fusion and the ranking priors for code;
- :mod:`~tasks.search.repository_search`: the search service behind ``codeflow search``
  and ``/api/search`` (manifest, search cache, store).
"""
