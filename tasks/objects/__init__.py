"""Shared object storage: :class:`~tasks.objects.s3_objects.S3Objects`, small JSON and text
objects (manifests, pending IDs, the registry) in the bucket of ``CODEFLOW_STORE_URI``, and
:func:`~tasks.objects.s3_objects.storage_error`, which turns any S3 client's failure (pyarrow's,
LanceDB's) into one line naming the setting to check."""
