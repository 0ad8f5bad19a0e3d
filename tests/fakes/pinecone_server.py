"""A local server speaking the Pinecone REST endpoints the official ``pinecone`` client uses.

Control plane: ``GET /indexes/{name}`` (describe: the data-plane host is this server).
Data plane of one dense index: ``POST /vectors/upsert``, ``POST /query``,
``POST /vectors/delete``, ``GET /vectors/fetch``, ``GET /vectors/list``,
``POST /describe_index_stats`` and ``DELETE /namespaces/{name}``, with the JSON shapes the
client decodes (camelCase). It enforces Pinecone's documented limits: 1,000 vectors and 2 MB
per upsert, 40 KB of metadata per vector, 1,000 ids per delete, the index dimension, the
``Api-Key`` header. Metadata filters support ``$eq $ne $in $nin $gt $gte $lt $lte $and $or``
and implicit equality. It is strongly consistent (real Pinecone is eventually consistent).
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import unquote

import numpy as np

from tests.fakes.http_fake import FakeHTTPServer, Reply, Request

MAX_UPSERT_VECTORS = 1000
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_DELETE_IDS = 1000
_COMPARE = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def _error(status: int, message: str) -> Reply:
    return Reply(status, {"code": status, "message": message, "details": []})


def matches(metadata: dict[str, Any], condition: dict[str, Any]) -> bool:
    """Pinecone's metadata filter language over one record's metadata."""
    for key, expected in condition.items():
        if key == "$and":
            ok = all(matches(metadata, c) for c in expected)
        elif key == "$or":
            ok = any(matches(metadata, c) for c in expected)
        elif isinstance(expected, dict):
            ok = all(_operator(metadata.get(key), op, arg) for op, arg in expected.items())
        else:
            ok = _operator(metadata.get(key), "$eq", expected)
        if not ok:
            return False
    return True


def _operator(value: Any, op: str, arg: Any) -> bool:
    if op == "$eq":
        return bool(value == arg or (isinstance(value, list) and arg in value))
    if op == "$ne":
        return bool(value != arg)
    if op == "$in":
        return bool(value in arg)
    if op == "$nin":
        return bool(value not in arg)
    if op in _COMPARE:
        return value is not None and bool(_COMPARE[op](value, arg))
    raise ValueError(f"unsupported filter operator {op}")


class PineconeFake(FakeHTTPServer):
    def __init__(
        self, api_key: str, *, index: str = "codeflow", dimension: int = 256, metric: str = "cosine"
    ) -> None:
        super().__init__()
        self.api_key, self.index_name = api_key, index
        self.dimension, self.metric = dimension, metric
        self.namespaces: dict[str, dict[str, tuple[np.ndarray[Any, Any], dict[str, Any]]]] = {}
        self.upsert_sizes: list[tuple[int, int]] = []  # (vectors, body bytes) per upsert
        self.delete_sizes: list[int] = []
        self._data = threading.Lock()

    def route(self, request: Request) -> Reply:
        if request.headers.get("api-key") != self.api_key:
            return _error(401, "Invalid API Key")
        body = request.body if isinstance(request.body, dict) else {}
        key = (request.method, request.path)
        if request.method == "GET" and request.path.startswith("/indexes/"):
            return self._describe(unquote(request.path.removeprefix("/indexes/")))
        if request.method == "DELETE" and request.path.startswith("/namespaces/"):
            with self._data:
                self.namespaces.pop(unquote(request.path.removeprefix("/namespaces/")), None)
            return Reply(202, {})
        handlers = {
            ("POST", "/vectors/upsert"): self._upsert,
            ("POST", "/query"): self._query,
            ("POST", "/vectors/delete"): self._delete,
            ("POST", "/describe_index_stats"): self._stats,
        }
        if key in handlers:
            return handlers[key](body)
        if key == ("GET", "/vectors/fetch"):
            return self._fetch(request.query)
        if key == ("GET", "/vectors/list"):
            return self._list(request.query)
        return _error(404, f"no route {request.method} {request.path}")

    def _describe(self, name: str) -> Reply:
        if name != self.index_name:
            return _error(404, f"Resource {name} not found")
        field = {"type": "dense_vector", "dimension": self.dimension, "metric": self.metric}
        return Reply(
            200,
            {
                "name": name,
                "status": {"ready": True, "state": "Ready"},
                "schema": {"fields": {"values": field}},
                "deployment": {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"},
                "deletion_protection": "disabled",
                "host": self.url,
            },
        )

    def _upsert(self, body: dict[str, Any]) -> Reply:
        vectors = body.get("vectors") or []
        size = len(json.dumps(body).encode())
        if size > MAX_REQUEST_BYTES:
            return _error(413, f"request size {size} exceeds {MAX_REQUEST_BYTES} bytes")
        if len(vectors) > MAX_UPSERT_VECTORS:
            return _error(400, f"upsert of {len(vectors)} vectors exceeds {MAX_UPSERT_VECTORS}")
        rows = {}
        for vector in vectors:
            values = np.asarray(vector.get("values") or [], dtype=np.float32)
            if values.shape != (self.dimension,):
                return _error(
                    400,
                    f"Vector dimension {values.size} does not match the dimension of the "
                    f"index {self.dimension}",
                )
            metadata = vector.get("metadata") or {}
            if len(json.dumps(metadata).encode()) > MAX_METADATA_BYTES:
                return _error(400, f"Metadata size exceeds the limit of {MAX_METADATA_BYTES} bytes")
            rows[vector["id"]] = (values, metadata)
        with self._data:
            self.namespaces.setdefault(body.get("namespace", ""), {}).update(rows)
            self.upsert_sizes.append((len(vectors), size))
        return Reply(200, {"upsertedCount": len(rows)})

    def _query(self, body: dict[str, Any]) -> Reply:
        namespace = body.get("namespace", "")
        top_k = int(body.get("topK", 10))
        query = np.asarray(body.get("vector") or [], dtype=np.float32)
        if query.shape != (self.dimension,):
            return _error(400, f"Query vector dimension {query.size} != {self.dimension}")
        condition = body.get("filter") or {}
        with self._data:
            rows = list(self.namespaces.get(namespace, {}).items())
        scored = [
            (self._score(query, values), vid, metadata)
            for vid, (values, metadata) in rows
            if matches(metadata, condition)
        ]
        scored.sort(key=lambda item: (-item[0], item[1]))
        include = bool(body.get("includeMetadata"))
        found = [
            {"id": vid, "score": score, "values": [], **({"metadata": m} if include else {})}
            for score, vid, m in scored[:top_k]
        ]
        return Reply(200, {"matches": found, "namespace": namespace, "usage": {"readUnits": 5}})

    def _score(self, query: np.ndarray[Any, Any], values: np.ndarray[Any, Any]) -> float:
        if self.metric == "cosine":
            norm = float(np.linalg.norm(query) * np.linalg.norm(values)) or 1.0
            return float(query @ values) / norm
        return float(query @ values)

    def _delete(self, body: dict[str, Any]) -> Reply:
        namespace = body.get("namespace", "")
        ids = body.get("ids") or []
        if len(ids) > MAX_DELETE_IDS:
            return _error(400, f"delete of {len(ids)} ids exceeds {MAX_DELETE_IDS}")
        with self._data:
            stored = self.namespaces.get(namespace, {})
            if body.get("deleteAll"):
                stored.clear()
            for vid in ids:
                stored.pop(vid, None)
            self.delete_sizes.append(len(ids))
        return Reply(200, {})

    def _fetch(self, query: dict[str, list[str]]) -> Reply:
        namespace = (query.get("namespace") or [""])[0]
        with self._data:
            stored = self.namespaces.get(namespace, {})
            found = {
                vid: {"id": vid, "values": stored[vid][0].tolist(), "metadata": stored[vid][1]}
                for vid in query.get("ids", [])
                if vid in stored
            }
        return Reply(200, {"vectors": found, "namespace": namespace, "usage": {"readUnits": 1}})

    def _list(self, query: dict[str, list[str]]) -> Reply:
        namespace = (query.get("namespace") or [""])[0]
        prefix = (query.get("prefix") or [""])[0]
        limit = int((query.get("limit") or ["100"])[0])
        start = int((query.get("paginationToken") or ["0"])[0])
        with self._data:
            ids = sorted(v for v in self.namespaces.get(namespace, {}) if v.startswith(prefix))
        page = ids[start : start + limit]
        body: dict[str, Any] = {"vectors": [{"id": v} for v in page], "namespace": namespace}
        if start + limit < len(ids):
            body["pagination"] = {"next": str(start + limit)}
        return Reply(200, body)

    def _stats(self, body: dict[str, Any]) -> Reply:
        with self._data:
            counts = {ns: len(rows) for ns, rows in self.namespaces.items() if rows}
        return Reply(
            200,
            {
                "namespaces": {ns: {"vectorCount": n} for ns, n in counts.items()},
                "dimension": self.dimension,
                "indexFullness": 0.0,
                "totalVectorCount": sum(counts.values()),
                "metric": self.metric,
                "vectorType": "dense",
            },
        )

    def all_ids(self, namespace: str) -> list[str]:
        with self._data:
            return sorted(self.namespaces.get(namespace, {}))
