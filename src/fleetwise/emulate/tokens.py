"""What an emulated worker does without a model: count prompt tokens, choose output lengths, make token text.

* **Token ids** (``"prompt": [1, 2, 3]``): the input length is exact - what ``fleetwise replay`` sends.
* **Text**: ``ceil(UTF-8 bytes / 4)`` tokens, at least 1 - the common rule of thumb of about four characters of
  English per BPE token (OpenAI's tokenizer guide); deterministic and model-free, so a text prompt's length is
  an estimate, not the real model's count.
* **Chat messages**: the text rule on each message's content plus 3 tokens per message and 3 for the assistant's
  reply header (the per-message overhead OpenAI's cookbook counts for its chat models).
* **Output length**: ``max_tokens`` exactly with ``ignore_eos`` (vLLM's extension); otherwise a draw from the
  lognormal of the Azure LLM conversation trace's output lengths (mean 211, p95 451 tokens:
  :data:`fleetwise.traffic.lengths.CHAT_OUTPUT`), from the worker's seeded generator, then clipped to
  ``[min_tokens, max_tokens]``; a draw below ``max_tokens`` ends with finish reason ``stop``.
"""

from __future__ import annotations

import random

from fleetwise.traffic.lengths import CHAT_OUTPUT
from fleetwise.traffic.tokens import (  # noqa: F401 - the counting rule lives with the traffic records
    BYTES_PER_TOKEN,
    MESSAGE_OVERHEAD_TOKENS,
    REPLY_OVERHEAD_TOKENS,
    chat_tokens,
    content_text,
    prompt_token_ids,
    text_tokens,
)

# The text of generated token i (any fixed vocabulary would do: clients see words, not the model's output).
WORDS = tuple(" " + w for w in (
    "the", "fleet", "serves", "tokens", "at", "the", "lowest", "cost", "that", "still", "meets", "its", "latency",
    "objectives", "while", "spot", "capacity", "comes", "and", "goes", "and", "every", "request", "is", "counted"))


class OutputLengths:
    """Seeded output lengths of requests that do not fix their own (no ``ignore_eos``)."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        mu, sigma = CHAT_OUTPUT.lognormal
        self._mu, self._sigma = mu, sigma

    def draw(self, max_tokens: int, min_tokens: int = 0, ignore_eos: bool = False) -> int:
        """Tokens the request will generate: ``max_tokens`` with ``ignore_eos``, else a clipped draw."""
        if ignore_eos:
            return max_tokens
        n = round(self._rng.lognormvariate(self._mu, self._sigma))
        return max(1, min(max_tokens, max(n, min_tokens)))


def token_text(i: int) -> str:
    """The text of the i-th generated token."""
    return WORDS[i % len(WORDS)]


def token_id(i: int) -> int:
    """The id of the i-th generated token (its index in :data:`WORDS`, the emulator's whole vocabulary), as
    ``return_token_ids`` reports it (vLLM >= 0.10.2's extension)."""
    return i % len(WORDS)
