"""The pipelines as Prefect sees them, and the logic they run.

- :mod:`~tasks.pipeline.index_steps`, :mod:`~tasks.pipeline.sandbox_steps`: each step as a
  plain function over :class:`~tasks.services.Services` (no Prefect);
- :mod:`~tasks.pipeline.scheduler`: steps 3-6 of vectorization, overlapped (no Prefect);
- :mod:`~tasks.pipeline.vectorize_tasks`, :mod:`~tasks.pipeline.sandbox_tasks`: the steps as
  ``@task`` wrappers with retries, cache policies and hooks;
- :mod:`~tasks.pipeline.hooks`: state hooks that publish flow and task events;
- :mod:`~tasks.pipeline.batch_locks`: the embedding batches' Redis lock manager;
- :mod:`~tasks.pipeline.json_logs`, :mod:`~tasks.pipeline.long_lived`: the run process's
  log format and garbage-collector settings.
"""
