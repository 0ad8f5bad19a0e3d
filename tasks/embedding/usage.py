"""What embedding models can do and cost, and what a run used (pure logic, no I/O).

Prices are OpenAI's published list prices for the embeddings endpoint, in US dollars per
million input tokens (standard tier; the Batch API costs half): ``text-embedding-3-small``
$0.02, ``text-embedding-3-large`` $0.13, ``text-embedding-ada-002`` $0.10. They change
rarely; :data:`MODELS` is the one place to update them. The estimate is tokens x price: the
tokens are the ``usage.total_tokens`` the server reported for each successful request (what
it bills), or the local exact count when a server omits ``usage``. Failed attempts are not
billed by OpenAI and are not counted.

>>> usage = EmbeddingUsage(requests=3, tokens=1_500_000, retries=1, model="text-embedding-3-small")
>>> usage.estimated_cost_usd
0.03
>>> usage_of(object()).as_summary()
{'embedding_tokens': 0, 'embedding_requests': 0, 'estimated_cost_usd': 0.0}
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True, slots=True)
class EmbeddingModel:
    """One model: its native width, whether it accepts ``dimensions``, its price."""

    name: str
    max_dimensions: int
    shortenable: bool
    usd_per_million_tokens: float
    max_input_tokens: int = 8191


MODELS: dict[str, EmbeddingModel] = {
    m.name: m
    for m in (
        EmbeddingModel("text-embedding-3-small", 1536, True, 0.02),
        EmbeddingModel("text-embedding-3-large", 3072, True, 0.13),
        EmbeddingModel("text-embedding-ada-002", 1536, False, 0.10),
    )
}


def price_per_million(model: str) -> float:
    """Known models' list price; 0.0 for others (a self-hosted server's cost is not known)."""
    known = MODELS.get(model)
    return known.usd_per_million_tokens if known else 0.0


@dataclass(frozen=True, slots=True)
class EmbeddingUsage:
    """Counters of one embedder (or the difference between two snapshots of it)."""

    requests: int = 0
    tokens: int = 0
    retries: int = 0
    throttled: int = 0
    model: str = ""
    cost_per_million: float = field(default=-1.0, repr=False)

    @property
    def estimated_cost_usd(self) -> float:
        per_million = (
            self.cost_per_million if self.cost_per_million >= 0 else price_per_million(self.model)
        )
        return round(self.tokens * per_million / 1_000_000, 6)

    def minus(self, earlier: EmbeddingUsage) -> EmbeddingUsage:
        """What was used since ``earlier`` (a snapshot of the same embedder)."""
        return replace(
            self,
            requests=self.requests - earlier.requests,
            tokens=self.tokens - earlier.tokens,
            retries=self.retries - earlier.retries,
            throttled=self.throttled - earlier.throttled,
        )

    def as_summary(self) -> dict[str, int | float]:
        """The fields ``codeflow index --json`` reports."""
        return {
            "embedding_tokens": self.tokens,
            "embedding_requests": self.requests,
            "estimated_cost_usd": self.estimated_cost_usd,
        }


def usage_of(embedder: object) -> EmbeddingUsage:
    """A snapshot of ``embedder.usage`` if it keeps one (remote embedders), else zeros.

    The local embedders make no requests and cost nothing, so a flow can always report
    ``usage_of(rt.embedder).minus(before).as_summary()``.
    """
    usage = getattr(embedder, "usage", None)
    return usage if isinstance(usage, EmbeddingUsage) else EmbeddingUsage()
