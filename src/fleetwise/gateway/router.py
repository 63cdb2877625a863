"""Complexity routing: send a request for a virtual model (a :class:`~fleetwise.gateway.config.Route`) to its
cheap model unless a score in [0, 1] says it needs the strong one.

* :class:`FeatureScorer` - a fixed logistic of six request features (no training, microseconds per request).
* :class:`ClassifierScorer` - the same features, with weights a user fits on their own labelled requests.
* :class:`Router` - ``choose(body) -> (model, score)``: strong when ``score >= threshold``, as RouteLLM does.
* :func:`calibrate` - the threshold that sends a chosen share of a sample to the strong model (RouteLLM's
  method); :func:`savings` - what that threshold saves against sending everything to the strong model.

A request whose ``model`` names a backend model directly is never scored: the gateway app sends it where it
asks. Only requests for a route's name reach :meth:`Router.choose`.

Features (each in [0, 1]; computed on at most :data:`SCAN_CHARS` characters - the head and tail of the
conversation - so scoring stays microseconds long whatever the prompt's size):

======== ===========================================================================================
length   tokens of the non-system text, ``ceil(UTF-8 bytes / 4)`` (:mod:`fleetwise.traffic.tokens`), on a
         log scale that reaches 1 at :data:`LENGTH_FULL_TOKENS`
code     1 with a fenced block; else code words (python, function, bug, ...) and the density of
         ``{}[]();=<>`` above that of prose
math     LaTeX commands and ``$...$``, math words (prove, integral, probability, ...), arithmetic
         expressions (``3 * 4``, ``x^2``)
steps    enumerated lines, sequence words (step by step, first, then, finally), and sentences or clauses
         that start with an imperative, beyond the first ("Explain X, then compare Y, and finally suggest Z")
turns    conversation depth: non-system messages beyond the first, 1 at :data:`TURNS_FULL` more
system   tokens of the system / developer messages, on a log scale that reaches 1 at :data:`SYSTEM_FULL_TOKENS`
======== ===========================================================================================

Code, math and steps add capped evidence (e.g. 0.25 per distinct code word, 0.5 per LaTeX mark); the score is
``logistic(bias + sum(weight * feature))`` with the weights and their reasons at :data:`DEFAULT_WEIGHTS`.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fleetwise.errors import ConfigError, InputFormatError
from fleetwise.gateway.config import Route
from fleetwise.traffic.lengths import CHAT_OUTPUT

# The byte rule lives with the emulated workers; the gateway must count tokens the same way they do.
from fleetwise.traffic.tokens import chat_tokens, content_text, text_tokens

FEATURES = ("length", "code", "math", "steps", "turns", "system")
SCAN_CHARS = 8192
"""Characters a score reads: the first and last 4,096 (the task is usually stated at the start of a prompt
and the question at its end); ~8 KB keeps a score near 30 µs on one core even for a 1 MB prompt."""
LENGTH_SCALE_TOKENS = 8
LENGTH_FULL_TOKENS = 4096
SYSTEM_FULL_TOKENS = 2048
TURNS_FULL = 10
DEFAULT_OUTPUT_TOKENS = round(CHAT_OUTPUT.mean)
"""Output tokens of a request without ``max_tokens``: the mean output of the Azure LLM conversation trace
(:data:`fleetwise.traffic.lengths.CHAT_OUTPUT`), the same default the emulated workers draw around."""
MAX_SAMPLE_REQUESTS = 1_000_000
"""Requests :func:`read_sample` accepts: scoring takes ~20-50 µs each, so a million take under a minute."""

# Weights of the features, in the order of FEATURES, and the bias, on the logit scale. Set a priori from how
# much a larger model of the same family gains on each kind of task (Llama 3.1 8B -> 70B Instruct, Meta's
# model card, models/llama3_1/MODEL_CARD.md in meta-llama/llama-models): math gains the most (MATH 51.9 -> 68.0,
# GSM-8K 84.5 -> 95.1) and code nearly as much (MBPP++ 72.8 -> 86.0, MultiPL-E HumanEval 50.8 -> 65.5,
# HumanEval 72.6 -> 80.5): 2.5 each. Following several instructions gains less per instruction (IFEval
# 80.4 -> 87.5) but errors compound over steps: 2.0. Long inputs are weaker evidence of difficulty (a long
# document to summarise is often easy): 1.5. Conversation depth (multi-turn answers drift more in small
# models, as MT-Bench's second turn shows) 1.0; a large system prompt is mostly an application's fixed
# template, shared by its easy and hard requests alike: 0.5. The bias -3.0 puts a request with no evidence at
# 0.05 and needs about two strong signals (z >= 0) to pass the default threshold 0.5. Not fitted to any test
# set; fit ClassifierScorer on your own labels when you have them.
DEFAULT_WEIGHTS = (1.5, 2.5, 2.5, 2.0, 1.0, 0.5)
DEFAULT_BIAS = -3.0

# Words are matched as whole lower-case words of the text with punctuation made spaces: one split and set
# intersections, not one case-insensitive regex alternation per vocabulary (those cost ~100 µs per 2 KB each).
# Distinct words count, not repetitions: "code code code" is no more code than "code".


def _vocabulary(words: str) -> frozenset[str]:
    return frozenset(words.split())


_CODE_SYMBOLS = "{}[]();=<>"
_PROSE_SYMBOL_DENSITY = 0.01  # parentheses and the odd '=' of ordinary prose
_CODE_WORDS = _vocabulary(
    "code function method class script program python javascript typescript java rust golang sql regex api bug "
    "debug compile compiler exception traceback refactor implement algorithm def return import const lambda "
    "async await")
_MATH_WORDS = _vocabulary(
    "prove proof theorem lemma integral integrate derivative differentiate equation solve probability matrix "
    "matrices eigenvalue eigenvalues eigenvector eigenvectors polynomial calculate compute limit factorial "
    "prime primes modulo geometry algebra variance optimize optimise")
_SEQUENCE_WORDS = _vocabulary("step steps first firstly second secondly then next finally lastly")
_IMPERATIVE_VERBS = _vocabulary(
    "write explain list compare implement prove derive analyze analyse summarize summarise describe create "
    "calculate compute design translate refactor find show give make add fix evaluate outline solve convert "
    "generate identify discuss plot build optimize optimise test review rewrite draft suggest include check "
    "verify")
_PHRASES = {"code": ("stack trace",), "math": ("expected value",), "steps": ("step by step", "after that")}
# Each pattern starts with a literal or a small character set, which the regex engine scans for quickly;
# one pattern with alternatives that start differently is tried at every position (several times slower).
_LATEX_COMMAND = re.compile(r"\\(?:frac|int|sum|sqrt|prod|lim|alpha|beta|theta|lambda|sigma|pi|cdot|partial|"
                            r"infty|mathbb|begin)\b")
_INLINE_MATH = re.compile(r"\$[^$\s][^$\n]{0,200}(?<=\S)\$(?!\d)")  # Pandoc's rule: "$5 and $10" is not math
# An operator before a number (3 * 4, x^2, = 12); '-' and '/' are left out: dates, ranges and paths have them.
_ARITHMETIC = re.compile(r"[+*^=<>×÷] ?[\d(]")
# Patterns that start with a literal newline: the regex engine skips to candidates instead of trying every
# position (the text is searched with a newline prepended).
_ENUMERATION = re.compile(r"\n[ \t]*(?:\d{1,2}[.)]|[-*•])[ \t]+\S")
_SENTENCE_START = re.compile(r"\n\s*(?:(?:please|now|also|and|then|next|finally|first) +)*([a-z]+)")
# Lower-cased text to words: sentence and clause ends become newlines (for _SENTENCE_START: "Explain X, then
# compare Y and Z, and finally suggest W" is three instructions), other punctuation spaces.
_TO_WORDS = str.maketrans({**{c: " " for c in string.punctuation}, **{c: "\n" for c in ".!?;:,"}})
_NO_SYMBOLS = str.maketrans("", "", _CODE_SYMBOLS)
_SYSTEM_ROLES = ("system", "developer")


class Scorer(Protocol):
    """How hard a request is: 0 (the cheap model will do) to 1 (needs the strong model)."""

    def score(self, body: Mapping) -> float:
        ...


# ---- features -------------------------------------------------------------------------------------------


def _texts(body: Mapping) -> tuple[str, str, int, int]:
    """(task text, system text, task tokens, non-system messages) of a chat or completions body."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return _chat_texts(messages)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt, "", text_tokens(prompt), 1
    if isinstance(prompt, list):
        return _prompt_list_text(prompt)
    return "", "", 0, 0


def _chat_texts(messages: list) -> tuple[str, str, int, int]:
    task, system = [], []
    for m in messages:
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        text = content_text(content) if _countable(content) else ""
        (system if m.get("role") in _SYSTEM_ROLES else task).append(text)
    text = "\n".join(task)
    return text, "\n".join(system), text_tokens(text), len(task)


def _countable(content) -> bool:
    """Whether a message's content is what the byte rule reads: text, or content parts whose text is text."""
    if content is None or isinstance(content, str):
        return True
    return isinstance(content, list) and all(not isinstance(p, dict) or isinstance(p.get("text", ""), str)
                                             for p in content)


def _prompt_list_text(prompt: list) -> tuple[str, str, int, int]:
    """A prompt given as token ids (exact length, no text), texts, or lists of token ids."""
    if all(isinstance(p, int) for p in prompt):
        return "", "", len(prompt), 1
    texts = [p for p in prompt if isinstance(p, str)]
    ids = sum(len(p) for p in prompt if isinstance(p, list))
    text = "\n".join(texts)
    return text, "", text_tokens(text) + ids, 1


def _window(text: str) -> str:
    """The head and tail a score reads (the whole text when it is short)."""
    if len(text) <= SCAN_CHARS:
        return text
    half = SCAN_CHARS // 2
    return text[:half] + "\n" + text[-half:]


def _log_scale(tokens: int, full: int) -> float:
    return min(1.0, math.log1p(tokens / LENGTH_SCALE_TOKENS) / math.log1p(full / LENGTH_SCALE_TOKENS))


@dataclass(frozen=True)
class _Scan:
    """What the content features read: the text; lower-cased with punctuation as spaces and sentence ends as
    newlines; its distinct words."""

    text: str
    spaced: str
    words: frozenset[str]

    @classmethod
    def of(cls, text: str) -> _Scan:
        spaced = text.lower().translate(_TO_WORDS)
        return cls(text, spaced, frozenset(spaced.split()))

    def hits(self, vocabulary: frozenset[str], phrases: tuple[str, ...]) -> int:
        """Distinct words of ``vocabulary`` in the text, plus the ``phrases`` it contains."""
        return len(self.words & vocabulary) + sum(p in self.spaced for p in phrases)


def _code(scan: _Scan) -> float:
    if "```" in scan.text:
        return 1.0
    symbols = (len(scan.text) - len(scan.text.translate(_NO_SYMBOLS))) / max(1, len(scan.text))
    density = min(1.0, max(0.0, symbols - _PROSE_SYMBOL_DENSITY) / 0.05)
    return min(1.0, 0.25 * scan.hits(_CODE_WORDS, _PHRASES["code"]) + density)


def _math(scan: _Scan) -> float:
    text = scan.text
    latex = ((len(_LATEX_COMMAND.findall(text)) if "\\" in text else 0)
             + (len(_INLINE_MATH.findall(text)) if "$" in text else 0))
    arithmetic = len(_ARITHMETIC.findall(text))
    return min(1.0, 0.5 * latex + 0.25 * scan.hits(_MATH_WORDS, _PHRASES["math"]) + 0.2 * arithmetic)


def _steps(scan: _Scan) -> float:
    enumerated = len(_ENUMERATION.findall("\n" + scan.text)) if "\n" in scan.text else 0
    imperatives = 0
    if scan.words & _IMPERATIVE_VERBS:  # else no sentence can start with one: skip the search
        imperatives = sum(map(_IMPERATIVE_VERBS.__contains__, _SENTENCE_START.findall("\n" + scan.spaced)))
    sequence = scan.hits(_SEQUENCE_WORDS, _PHRASES["steps"])
    return min(1.0, 0.2 * enumerated + 0.2 * sequence + 0.25 * max(0, imperatives - 1))


def feature_vector(body: Mapping) -> tuple[float, ...]:
    """The features of a request body, in the order of :data:`FEATURES`, each in [0, 1]."""
    task, system, tokens, turns = _texts(body)
    scan = _Scan.of(_window(task))
    return (_log_scale(tokens, LENGTH_FULL_TOKENS), _code(scan), _math(scan), _steps(scan),
            min(1.0, max(0, turns - 1) / TURNS_FULL), _log_scale(text_tokens(_window(system)), SYSTEM_FULL_TOKENS))


def features(body: Mapping) -> dict[str, float]:
    """The features of a request body by name (to explain a score)."""
    return dict(zip(FEATURES, feature_vector(body), strict=True))


def _logistic(z: float) -> float:
    """1 / (1 + e^-z) without overflow for large |z|."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _linear_score(weights: Sequence[float], bias: float, body: Mapping) -> float:
    return _logistic(bias + sum(w * x for w, x in zip(weights, feature_vector(body), strict=True)))


# ---- scorers --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureScorer:
    """The fixed feature score: ``logistic(bias + sum(weight_i * feature_i))``; weights and their reasons
    at :data:`DEFAULT_WEIGHTS`. Pure Python, some tens of microseconds per request."""

    weights: tuple[float, ...] = DEFAULT_WEIGHTS
    bias: float = DEFAULT_BIAS

    def __post_init__(self) -> None:
        if len(self.weights) != len(FEATURES):
            raise ConfigError(f"FeatureScorer needs {len(FEATURES)} weights ({', '.join(FEATURES)}), "
                              f"got {len(self.weights)}")

    def score(self, body: Mapping) -> float:
        """The request's score in [0, 1]."""
        return _linear_score(self.weights, self.bias, body)


class ClassifierScorer:
    """Logistic regression on :data:`FEATURES`, fitted on a user's own requests labelled 1 (needs the strong
    model) or 0 (the cheap one did well), with an L2 penalty ``l2`` on the weights (not the bias) so that a
    separable set still gives finite weights. Fitted by Newton's method (NumPy); scored in pure Python."""

    def __init__(self, l2: float = 1.0) -> None:
        if not (math.isfinite(l2) and l2 > 0):
            raise ConfigError(f"ClassifierScorer: l2 must be a finite positive number (got {l2})")
        self.l2 = l2
        self.weights: tuple[float, ...] | None = None
        self.bias = 0.0
        self.trained_on = 0
        self.train_log_loss = math.nan

    def fit(self, bodies: Sequence[Mapping], labels: Sequence[int]) -> ClassifierScorer:
        """Fit the weights to labelled request bodies; returns self (scikit-learn's convention)."""
        import numpy as np

        y = _check_labels(labels, len(bodies))
        x = np.array([feature_vector(b) for b in bodies], dtype=float)
        coef = _newton_logistic(np.hstack([x, np.ones((len(y), 1))]), y, self.l2)
        self.weights, self.bias = tuple(float(w) for w in coef[:-1]), float(coef[-1])
        self.trained_on = len(y)
        p = np.clip(1.0 / (1.0 + np.exp(-(x @ coef[:-1] + coef[-1]))), 1e-12, 1 - 1e-12)
        self.train_log_loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        return self

    def score(self, body: Mapping) -> float:
        """The request's score in [0, 1]: the fitted probability that it needs the strong model."""
        if self.weights is None:
            raise ConfigError("ClassifierScorer is not fitted: call fit() or ClassifierScorer.load()")
        return _linear_score(self.weights, self.bias, body)

    def to_json(self) -> str:
        """The fitted model as JSON: features, weights, bias, and what it was fitted on."""
        if self.weights is None:
            raise ConfigError("ClassifierScorer is not fitted: nothing to save")
        return json.dumps({"format": "fleetwise-router-classifier", "version": 1, "features": list(FEATURES),
                           "weights": dict(zip(FEATURES, self.weights, strict=True)), "bias": self.bias,
                           "l2": self.l2, "trained_on": self.trained_on,
                           "train_log_loss": self.train_log_loss}, indent=2)

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path`` (atomically)."""
        from fleetwise.atomic import write_atomic

        write_atomic(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ClassifierScorer:
        """Read a model written by :meth:`save`; InputFormatError naming the file and field if it is wrong."""
        from fleetwise.catalog.validation import read_text

        path = Path(path)
        try:
            data = json.loads(read_text(path, InputFormatError))
        except json.JSONDecodeError as exc:
            raise InputFormatError(f"not valid JSON ({exc.msg})", file=str(path), line=exc.lineno) from None
        return cls._from_dict(data, str(path))

    @classmethod
    def _from_dict(cls, data, file: str) -> ClassifierScorer:
        if not isinstance(data, dict) or data.get("format") != "fleetwise-router-classifier":
            raise InputFormatError("not a router classifier (no \"format\": \"fleetwise-router-classifier\")",
                                   file=file)
        weights = data.get("weights")
        if not isinstance(weights, dict) or sorted(weights) != sorted(FEATURES):
            raise InputFormatError(f"weights must name exactly the features {', '.join(FEATURES)}", file=file,
                                   field="weights")
        values = [weights[f] for f in FEATURES] + [data.get("bias"), data.get("l2", 1.0)]
        if not all(_finite(v) for v in values) or values[-1] <= 0:
            raise InputFormatError("weights, bias and l2 must be finite numbers (l2 > 0)", file=file,
                                   field="weights")
        model = cls(float(values[-1]))
        model.weights, model.bias = tuple(float(v) for v in values[:-2]), float(values[-2])
        model.trained_on = int(data.get("trained_on", 0)) if _finite(data.get("trained_on", 0)) else 0
        model.train_log_loss = float(data["train_log_loss"]) if _finite(data.get("train_log_loss")) else math.nan
        return model


def _finite(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_labels(labels: Sequence[int], n: int):
    """Labels as a float array of 0/1, one per body, both classes present."""
    import numpy as np

    if len(labels) != n:
        raise InputFormatError(f"{n} request bodies but {len(labels)} labels")
    if any(label not in (0, 1) for label in labels):
        raise InputFormatError("labels must be 0 (cheap model is enough) or 1 (needs the strong model)")
    y = np.asarray(labels, dtype=float)
    if y.min() == y.max():
        raise InputFormatError("labels must include both 0 and 1 to fit a classifier")
    return y


def _newton_logistic(a, y, l2: float, max_iter: int = 100):
    """Coefficients (weights then bias, the last column of ``a`` being ones) minimising the log loss plus
    ``l2 / 2 * |weights|^2``. Newton's method: the problem is strictly convex, a few steps suffice."""
    import numpy as np

    penalty = np.full(a.shape[1], l2)
    penalty[-1] = 1e-9  # the bias is not shrunk; the tiny term keeps the Hessian invertible
    coef = np.zeros(a.shape[1])
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ coef, -500, 500)))
        grad = a.T @ (p - y) + penalty * coef
        hess = (a.T * (p * (1 - p))) @ a + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        coef -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return coef


SCORERS: dict[str, Callable[[], Scorer]] = {"features": FeatureScorer}
"""The scorers a route's ``scorer`` field names (gateway.yaml); new ones register here."""


# ---- routing --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Router:
    """Chooses between a route's cheap and strong model per request.

    A request whose ``model`` is a backend model (not a route) is not routed: the gateway app sends it to
    that model unscored and only calls :meth:`choose` for requests that name a route.
    """

    route: Route
    scorer: Scorer

    @classmethod
    def for_route(cls, route: Route) -> Router:
        """The router with the scorer the route's config names (a classifier is loaded from its file)."""
        if route.scorer == "classifier":
            return cls(route, ClassifierScorer.load(route.classifier))
        return cls(route, SCORERS[route.scorer]())

    def choose(self, body: Mapping) -> tuple[str, float]:
        """(model, score): the strong model when ``score >= threshold`` (RouteLLM's rule), else the cheap."""
        score = self.scorer.score(body)
        return (self.route.strong if score >= self.route.threshold else self.route.cheap), score


def calibrate(scores: Iterable[float], strong_share: float) -> float:
    """The threshold that routes ``strong_share`` of a sample's requests to the strong model.

    RouteLLM's method (``routellm/calibrate_threshold.py`` in lm-sys/RouteLLM, commit 1da650a, 2024-07-07): the
    ``1 - strong_share`` quantile of the scores on a sample of the traffic, interpolated linearly between order
    statistics (pandas' default, which RouteLLM uses), with the rule score >= threshold -> strong. Without
    ties the share routed strong is within 1/n of ``strong_share``; ties at the threshold all go strong.
    A share of 0 gives a threshold just above the highest score (1.0 if that is already 1.0).
    """
    import numpy as np

    values = np.asarray(list(scores), dtype=float)
    if values.size == 0:
        raise ConfigError("calibrate needs at least one score")
    if not np.all(np.isfinite(values)):
        raise ConfigError("calibrate: scores must be finite numbers")
    if not (0.0 <= strong_share <= 1.0):
        raise ConfigError(f"the strong share must be a number >= 0 and <= 1 (got {strong_share:g})")
    if strong_share == 0:
        return float(min(1.0, np.nextafter(values.max(), np.inf)))
    return float(np.clip(np.quantile(values, 1.0 - strong_share), 0.0, 1.0))


# ---- cost -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Savings:
    """The cost of a sample of requests routed at ``threshold``, against sending them all to the strong model.

    Prompt tokens by the byte rule; output tokens from ``max_tokens`` (``max_completion_tokens``) times ``n``,
    else :data:`DEFAULT_OUTPUT_TOKENS` - an upper bound for requests that stop early, the same for both sides
    of the comparison.
    """

    threshold: float
    requests: int
    strong_requests: int
    prompt_tokens: int
    output_tokens: int
    usd_all_strong: float
    usd_routed: float

    @property
    def strong_share(self) -> float:
        """Share of the sample the threshold sends to the strong model."""
        return self.strong_requests / self.requests if self.requests else 0.0

    @property
    def saving_share(self) -> float:
        """Share of the all-strong cost that routing saves (0 when everything costs nothing)."""
        return 1.0 - self.usd_routed / self.usd_all_strong if self.usd_all_strong > 0 else 0.0


def prompt_tokens(body: Mapping) -> int:
    """Prompt tokens of a request body by the byte rule (chat overhead included; token ids counted exactly)."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return chat_tokens([m for m in messages if isinstance(m, dict) and _countable(m.get("content"))])
    return _texts(body)[2]




def output_tokens(body: Mapping, default: int = DEFAULT_OUTPUT_TOKENS) -> int:
    """Output tokens a request is costed at: its ``max_tokens`` (or ``max_completion_tokens``) times ``n``."""
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    per_choice = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0 else default
    n = body.get("n", 1)
    return per_choice * (n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else 1)


def _price(prices: Mapping, model: str) -> tuple[float, float]:
    """(input, output) USD per 1M tokens of a model: from ``{input, output}`` mappings or objects."""
    entry = prices.get(model)
    if entry is None:
        raise ConfigError(f"no price for model '{model}' (USD per 1M input and output tokens)")
    get = entry.get if isinstance(entry, Mapping) else (lambda k: getattr(entry, k, None))
    pair = (get("input"), get("output"))
    if not all(_finite(v) and v >= 0 for v in pair):
        raise ConfigError(f"model '{model}': prices must be finite numbers >= 0 (input and output per 1M tokens)")
    return float(pair[0]), float(pair[1])


def savings(sample_bodies: Sequence[Mapping], threshold: float, prices: Mapping, *, cheap: str, strong: str,
            scorer: Scorer | None = None, scores: Sequence[float] | None = None,
            default_output_tokens: int = DEFAULT_OUTPUT_TOKENS) -> Savings:
    """Estimated cost of the sample routed at ``threshold`` vs all sent to ``strong``.

    Args:
        prices: ``{model: {"input": usd_per_1m, "output": usd_per_1m}}`` (or objects with those attributes,
            as gateway.yaml's ``prices_usd_per_1m_tokens``); must price ``cheap`` and ``strong``.
        scorer: scores the bodies (default :class:`FeatureScorer`); ignored when ``scores`` are given.
        scores: the bodies' scores if already computed (one per body).
    """
    cheap_price, strong_price = _price(prices, cheap), _price(prices, strong)
    if scores is None:
        scorer = scorer or FeatureScorer()
        scores = [scorer.score(b) for b in sample_bodies]
    if len(scores) != len(sample_bodies):
        raise ConfigError(f"{len(sample_bodies)} request bodies but {len(scores)} scores")
    strong_n, p_all, o_all, usd_all, usd_routed = 0, 0, 0, 0.0, 0.0
    for body, score in zip(sample_bodies, scores, strict=True):
        p, o = prompt_tokens(body), output_tokens(body, default_output_tokens)
        routed_price = strong_price if score >= threshold else cheap_price
        strong_n += score >= threshold
        p_all, o_all = p_all + p, o_all + o
        usd_all += (p * strong_price[0] + o * strong_price[1]) / 1e6
        usd_routed += (p * routed_price[0] + o * routed_price[1]) / 1e6
    return Savings(threshold, len(sample_bodies), int(strong_n), p_all, o_all, usd_all, usd_routed)


def calibrate_route(sample_bodies: Sequence[Mapping], strong_share: float, prices: Mapping, *, cheap: str,
                    strong: str, scorer: Scorer | None = None,
                    default_output_tokens: int = DEFAULT_OUTPUT_TOKENS) -> Savings:
    """Calibrate a route's threshold on a sample (:func:`calibrate`) and cost it (:func:`savings`): what
    ``fleetwise gateway calibrate`` prints. ``Savings.threshold`` is the threshold to put in gateway.yaml."""
    scorer = scorer or FeatureScorer()
    scores = [scorer.score(b) for b in sample_bodies]
    threshold = calibrate(scores, strong_share)
    return savings(sample_bodies, threshold, prices, cheap=cheap, strong=strong, scores=scores,
                   default_output_tokens=default_output_tokens)


# ---- samples --------------------------------------------------------------------------------------------


def read_sample(path: str | Path) -> list[dict]:
    """The request bodies of a JSONL file (one OpenAI chat or completions body per line; blank lines skipped).

    Raises:
        InputFormatError: naming the file and line of the first line that is not a request body.
    """
    from fleetwise.catalog.validation import read_text

    path = Path(path)
    bodies = []
    for number, line in enumerate(read_text(path, InputFormatError).splitlines(), start=1):
        if not line.strip():
            continue
        bodies.append(_body(line, str(path), number))
        if len(bodies) > MAX_SAMPLE_REQUESTS:
            raise InputFormatError(f"more than {MAX_SAMPLE_REQUESTS:,} requests: use a smaller sample",
                                   file=str(path), line=number)
    if not bodies:
        raise InputFormatError("no request bodies (one JSON object per line)", file=str(path))
    return bodies


def _body(line: str, file: str, number: int) -> dict:
    try:
        body = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputFormatError(f"not valid JSON ({exc.msg}, column {exc.colno})", file=file, line=number) from None
    if not isinstance(body, dict):
        raise InputFormatError("each line must be a JSON object (a request body)", file=file, line=number)
    problem = _body_problem(body)
    if problem:
        raise InputFormatError(problem, file=file, line=number, field="messages" if "messages" in body
                               else "prompt")
    return body


def _body_problem(body: dict) -> str | None:
    """Why a body is not a chat or completions request, or None."""
    messages, prompt = body.get("messages"), body.get("prompt")
    if messages is None and prompt is None:
        return "a request body needs 'messages' (chat) or 'prompt' (completions)"
    if messages is not None:
        if not isinstance(messages, list) or not messages:
            return "'messages' must be a non-empty list of messages"
        if not all(isinstance(m, dict) and _countable(m.get("content")) for m in messages):
            return "each message must be an object whose content is text or a list of content parts"
        return None
    if isinstance(prompt, str) or (isinstance(prompt, list) and all(isinstance(p, str | int | list)
                                                                     for p in prompt)):
        return None
    return "'prompt' must be text, a list of texts or a list of token ids"
