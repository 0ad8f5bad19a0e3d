"""codeflow's optional native core (see native/src/lib.rs)."""

class PieceEncoder:
    def __init__(
        self,
        vocab: dict[str, int],
        merges: list[tuple[str, str]],
        table: bytes,
        dims: int,
        max_pieces: int,
    ) -> None: ...
    def encode(self, texts: list[str]) -> tuple[bytes, bytes]: ...
    def mean_rows(self, ids: bytes, bounds: bytes) -> bytes: ...
    def __len__(self) -> int: ...
