"""The work, in concept packages: pure logic, adapters that own one external system each
behind small Protocols (with in-memory twins), and thin Prefect task wrappers.

    pipeline/   Prefect tasks, hooks and locks; the steps and the scheduler they run
    services    the run's services, typed by Protocol (real or in-memory)
    search/     hybrid search and ranking, and the repository search service
    cache/ events/ sandbox/ vectors/ embedding/ repo/      one concept each
    redis_io/ index/ tokens/                               Redis boundary, pure indexing
    records, native_extension                              plain data, the Rust extension

Higher layers import lower ones only (``lint-imports`` checks it); errors come from
:mod:`config.errors`.
"""
