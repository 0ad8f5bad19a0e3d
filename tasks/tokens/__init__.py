"""Tokens, for three different jobs.

- :mod:`~tasks.tokens.code_tokens`: BM25's code-aware tokens (identifiers split as
  programmers read them);
- :mod:`~tasks.tokens.piece_tokens`, :mod:`~tasks.tokens.native_pieces`: WordLlama's
  tokenizer, in Python and through the native extension (the same IDs);
- :mod:`~tasks.tokens.openai_tokens`: counting OpenAI tokens offline (``cl100k_base``).
"""
