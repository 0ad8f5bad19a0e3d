"""Run history as tables and pictures: what ``codeflow report`` prints and the dashboard's
history panel shows.

- :mod:`~tasks.reports.history` (pure): rows of runs, index runs and sandbox runs from
  codeflow's events (also what the realtime server's ``/api/history`` answers);
- :mod:`~tasks.reports.frames`: the report's pandas DataFrames, from those rows, Prefect's
  flow and task runs, the cache statistics and the index manifests;
- :mod:`~tasks.reports.sources`: reading those inputs (the event stream, Prefect's API,
  Redis, the manifests);
- :mod:`~tasks.reports.render`: the report as a table, CSV, JSON, Parquet or a
  self-contained HTML page whose charts (:mod:`~tasks.reports.charts`) are inline SVG.
"""
