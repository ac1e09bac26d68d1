"""Embedding functions a re-embedding job can choose in its spec (``reembed.embedder``).

An embedder turns texts into vectors of one fixed dimension. Two ways to name one:

- a **registered name**: ``hashing`` ships with nsmigrate (below); ``register_embedder`` adds others at import time;
- a **dotted path** ``package.module:factory``: a callable taking the dimension and returning an ``Embedder``. This is
  where a real model plugs in, e.g. a module of yours wrapping sentence-transformers or an embeddings API::

      # mycompany/embed.py
      class E5:
          name = "e5-large"
          def __init__(self, dimension: int) -> None: self.dimension = dimension; self.model = load_model(...)
          def embed(self, texts): return self.model.encode(list(texts), normalize_embeddings=True).tolist()
      def make(dimension: int) -> E5: return E5(dimension)

  and in the spec ``reembed: {embedder: "mycompany.embed:make", dimension: 1024}``. The module must be importable by
  the workers (installed in their environment).

``HashingEmbedder`` needs no model and no network: each word and each pair of neighbouring words of the text is hashed
(BLAKE2b, keyed by the embedder's name) to one dimension and a sign; the sums are L2-normalised. The same text always
gives the same vector on every machine, texts that share words are close, and a text's own vector is its nearest
neighbour, which is what a migration test and a demo need. It is not a semantic model.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from nsmigrate.orchestrator.errors import SpecError

if TYPE_CHECKING:  # numpy: only a re-embedding job loads it, not every worker's start
    import numpy as np

#: A word as the hashing embedder (and the sandbox's models) count tokens: a run of letters, digits or underscores.
_WORD = re.compile(r"\w+")


@runtime_checkable
class Embedder(Protocol):
    """Texts in, vectors out: ``embed(texts)`` returns one vector of ``dimension`` floats per text, in order."""

    name: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def words(text: str, max_tokens: int | None = None) -> list[str]:
    """The lower-cased words of ``text`` (at most ``max_tokens``: the rest is cut off, as a model truncates)."""
    found = _WORD.findall(text.lower())
    return found if max_tokens is None else found[:max_tokens]


class HashingEmbedder:
    """Feature hashing of words and word pairs (see the module docstring); deterministic, offline, any dimension.

    Parameters:
        dimension: the vectors' length.
        name: keys the hash, so two hashing embedders of different names give unrelated vectors.
        max_tokens: words beyond this many are ignored (a model's input limit, truncating at the end).
    """

    def __init__(self, dimension: int, name: str = "hashing", max_tokens: int | None = None) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be ≥ 1, got {dimension}")
        self.dimension = dimension
        self.name = name
        self.max_tokens = max_tokens
        self._key = hashlib.blake2b(name.encode(), digest_size=16).digest()

    def _slot(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode(), digest_size=8, key=self._key).digest()
        number = int.from_bytes(digest, "little")
        return number % self.dimension, (1.0 if (number >> 63) & 1 else -1.0)

    def vector(self, text: str) -> np.ndarray:
        """The float32 unit vector of one text (all zeros but one for a text without words)."""
        import numpy as np

        tokens = words(text, self.max_tokens)
        out = np.zeros(self.dimension, dtype=np.float64)
        features = tokens + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]
        for feature in features or [""]:  # an empty text still gets a (fixed) unit vector
            slot, sign = self._slot(feature)
            out[slot] += sign
        norm = math.sqrt(float(out @ out))
        return (out / norm).astype(np.float32) if norm else out.astype(np.float32)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vector(t).tolist() for t in texts]


EmbedderFactory = Callable[[int], Embedder]

_REGISTRY: dict[str, EmbedderFactory] = {"hashing": lambda dimension: HashingEmbedder(dimension)}


def register_embedder(name: str, factory: EmbedderFactory) -> None:
    """Make ``name`` usable as ``reembed.embedder``; ``factory(dimension)`` builds the embedder."""
    _REGISTRY[name] = factory


def registered_embedders() -> list[str]:
    return sorted(_REGISTRY)


def open_embedder(name: str, dimension: int) -> Embedder:
    """The embedder a spec names (a registered name or ``module:factory``), built for ``dimension``.

    Raises:
        SpecError: no such embedder, its module does not import, or it makes vectors of another dimension.
    """
    factory = _REGISTRY.get(name)
    if factory is None:
        module_name, _, attr = name.partition(":")
        if not attr:
            raise SpecError(
                f"reembed.embedder: no embedder named {name!r}",
                hint=f"use one of {', '.join(registered_embedders())} or a dotted path package.module:factory",
            )
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise SpecError(
                f"reembed.embedder: {name!r} cannot be loaded: {e}",
                hint="install the module where the workers run, and name a callable taking the dimension",
            ) from e
    embedder = factory(dimension)
    if embedder.dimension != dimension:
        raise SpecError(
            f"reembed.embedder: {name!r} makes {embedder.dimension}-dimension vectors, the spec asks for {dimension}",
            hint="set reembed.dimension to the embedder's dimension",
        )
    return embedder
