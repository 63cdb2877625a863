"""Counting tokens without a model: the rule every part that sees raw requests shares (the emulated workers
count prompts with it, the gateway estimates a request's worst-case cost and scores its complexity with it).

* **Text**: ``ceil(UTF-8 bytes / 4)`` tokens - the common rule of thumb of about four characters of English per
  BPE token (OpenAI's tokenizer guide); deterministic and model-free, an estimate of the real model's count.
* **Chat messages**: the text rule on each message's content plus 3 tokens per message and 3 for the assistant's
  reply header (the per-message overhead OpenAI's cookbook counts for its chat models).
"""

from __future__ import annotations

import math

MESSAGE_OVERHEAD_TOKENS = 3
REPLY_OVERHEAD_TOKENS = 3
BYTES_PER_TOKEN = 4


def text_tokens(text: str) -> int:
    """Tokens of a text by the byte rule (0 for an empty string)."""
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / BYTES_PER_TOKEN)


def content_text(content) -> str:
    """The text of a chat message's content: a string, or the text parts of a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def chat_tokens(messages: list[dict]) -> int:
    """Prompt tokens of a chat conversation."""
    body = sum(text_tokens(content_text(m.get("content"))) + MESSAGE_OVERHEAD_TOKENS for m in messages)
    return body + REPLY_OVERHEAD_TOKENS


def prompt_token_ids(prompt) -> list[int] | None:
    """A completions prompt given as token ids (``[1, 2]``, or one such list in a list), else None."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], list):
        prompt = prompt[0]
    return prompt if isinstance(prompt, list) and prompt and all(isinstance(x, int) for x in prompt) else None
