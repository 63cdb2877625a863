"""vLLM's Prometheus metrics for one emulated engine, counted in plain Python and rendered at scrape time.

Source. Every name, metric type, help text, label name and default bucket list below is vLLM's own, read
from the vLLM 0.33.0 release (PyPI wheel ``vllm-0.33.0-cp38-abi3-manylinux_2_28_x86_64.whl``, built from git
commit ``4ba787ec9``) on 2026-12-07:

* ``vllm/v1/metrics/loggers.py`` - ``PrometheusStatLogger.__init__`` (names, types, help texts, labels
  ``["model_name", "engine"]``, ``finished_reason`` on ``vllm:request_success``) and ``.record`` (what each
  metric observes, and when);
* ``vllm/v1/metrics/buckets.py`` - ``REQUEST_LATENCY_BUCKETS``, ``TIME_TO_FIRST_TOKEN_BUCKETS``,
  ``INTER_TOKEN_LATENCY_BUCKETS``, ``ITERATION_TOKENS_BUCKETS`` and ``build_1_2_5_buckets(max_model_len)``;
* ``vllm/v1/engine/__init__.py`` - ``FINISH_REASON_STRINGS`` (every reason is exported from start, at 0);
* ``vllm/v1/metrics/stats.py`` - ``IterationStats.update_from_finished_request`` (queue = scheduled - queued,
  prefill = first token - scheduled, decode = last token - first token, inference = prefill + decode,
  TPOT = decode / (generation_tokens - 1), or 0 when a request produced at most one token).

Why not prometheus_client's ``Histogram``: the emulator produces ~10k tokens/s in one process, and every
``Histogram.observe`` takes a lock and walks the buckets. Here an observation is one ``bisect`` and two
additions, ``n`` equal observations (one inter-token gap per decoding sequence of an iteration) cost the same
as one, and the metric families are built only when ``/metrics`` is scraped. The text is what
prometheus_client prints for native metrics with the same observations, less the optional ``_created`` samples
(vLLM's multiprocess registry omits them too).

Where the emulator differs from a real vLLM, on purpose:

* only the metrics an emulator fills honestly are exported: no prefix-cache, multimodal, LoRA, speculative
  decoding, KV-connector, sleep-state or ``n > 1`` series, no ``vllm:request_num_preemptions`` and no
  ``vllm:request_prefill_kv_computed_tokens`` (the engine does not report per-request preemptions or cached
  tokens), no ``vllm:cache_config_info``;
* ``vllm:time_to_first_token_seconds`` is observed when the request finishes (vLLM observes it when the first
  token appears), so a scrape between the two lags by one request; requests that finish without any token
  are not observed, as in vLLM.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

LABEL_NAMES = ("model_name", "engine")
# vllm/v1/engine/__init__.py FINISH_REASON_STRINGS, in FinishReason order.
FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")

REQUEST_LATENCY_BUCKETS_S = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
    960.0, 1920.0, 7680.0,
)
TIME_TO_FIRST_TOKEN_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
    80.0, 160.0, 640.0, 2560.0,
)
INTER_TOKEN_LATENCY_BUCKETS_S = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)
ITERATION_TOKENS_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


def build_1_2_5_buckets(max_value: int) -> tuple[int, ...]:
    """vLLM's token-count buckets: 1, 2, 5, 10, 20, 50, ... up to and including ``max_value``."""
    buckets: list[int] = []
    scale = 1
    while True:
        for mantissa in (1, 2, 5):
            if mantissa * scale > max_value:
                return tuple(buckets)
            buckets.append(mantissa * scale)
        scale *= 10


class _Histogram:
    """One histogram's counts: per-bucket (not cumulative) counts, the last one for ``+Inf``, and the sum."""

    __slots__ = ("_le", "bounds", "counts", "help", "name", "sum")

    def __init__(self, name: str, help_text: str, bounds: Sequence[float]) -> None:
        self.name = name
        self.help = help_text
        # prometheus_client stores bounds as floats and prints them with floatToGoString ("1.0", "1e+06").
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self._le = (*(floatToGoString(b) for b in self.bounds), "+Inf")

    def observe(self, value: float) -> None:
        """Record one observation; ``le`` is inclusive, so a value equal to a bound lands in that bucket."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_n(self, value: float, n: int) -> None:
        """Record ``n`` observations of the same value for the cost of one."""
        if n > 0:
            self.counts[bisect_left(self.bounds, value)] += n
            self.sum += value * n

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, count of observations <= le)`` pairs ending with ``+Inf``, as Prometheus exposes them."""
        # One copy, so a scrape from another thread sees bucket counts from a single moment.
        counts = list(self.counts)
        running = 0
        pairs = []
        for le, count in zip(self._le, counts):
            running += count
            pairs.append((le, running))
        return pairs

    def family(self, labelvalues: Sequence[str]) -> HistogramMetricFamily:
        """The histogram as a metric family with one labelled series."""
        family = HistogramMetricFamily(self.name, self.help, labels=LABEL_NAMES)
        family.add_metric(labelvalues, self.cumulative(), self.sum)
        return family


class EngineMetrics:
    """vLLM's ``/metrics`` for one emulated engine, in its own registry (several engines share a process).

    The engine calls :meth:`step` once per iteration, :meth:`preempted` when it evicts a running sequence and
    :meth:`finished` once per request; the gauges are read from the ``gauges`` callback at scrape time. All
    calls come from the engine's event loop; :meth:`render` may also run on another thread.
    """

    def __init__(self, model_name: str, engine: str = "0", max_model_len: int = 131072,
                 gauges: Callable[[], tuple[int, int, float]] | None = None) -> None:
        """Start every count at zero.

        Args:
            model_name: the served model name, vLLM's ``model_name`` label.
            engine: the engine index, vLLM's ``engine`` label (``"0"`` without data parallelism).
            max_model_len: caps the token-count buckets, as vLLM's ``max_model_len`` does.
            gauges: returns ``(running requests, waiting requests, KV-cache usage in 0..1)`` when scraped;
                without it the gauges read 0.
        """
        self.model_name = model_name
        self.engine = str(engine)
        self.max_model_len = max_model_len
        self._gauges = gauges
        self._labelvalues = (model_name, self.engine)
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.preemptions = 0
        self.request_success = dict.fromkeys(FINISH_REASONS, 0)
        tokens = build_1_2_5_buckets(max_model_len)
        latency = REQUEST_LATENCY_BUCKETS_S
        self.request_prompt_tokens = _Histogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", tokens)
        self.request_generation_tokens = _Histogram(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", tokens)
        self.iteration_tokens = _Histogram(
            "vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.",
            ITERATION_TOKENS_BUCKETS)
        self.request_params_max_tokens = _Histogram(
            "vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", tokens)
        self.time_to_first_token = _Histogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
            TIME_TO_FIRST_TOKEN_BUCKETS_S)
        self.inter_token_latency = _Histogram(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
            INTER_TOKEN_LATENCY_BUCKETS_S)
        self.request_time_per_output_token = _Histogram(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.", INTER_TOKEN_LATENCY_BUCKETS_S)
        self.e2e_request_latency = _Histogram(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", latency)
        self.request_queue_time = _Histogram(
            "vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.",
            latency)
        self.request_inference_time = _Histogram(
            "vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.",
            latency)
        self.request_prefill_time = _Histogram(
            "vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.",
            latency)
        self.request_decode_time = _Histogram(
            "vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.",
            latency)
        # vLLM's registration order, so the page reads like a real server's.
        self._histograms = (
            self.request_prompt_tokens, self.request_generation_tokens, self.iteration_tokens,
            self.request_params_max_tokens, self.time_to_first_token, self.inter_token_latency,
            self.request_time_per_output_token, self.e2e_request_latency, self.request_queue_time,
            self.request_inference_time, self.request_prefill_time, self.request_decode_time,
        )
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def step(self, prompt_tokens: int, generation_tokens: int, itl_s: float, itl_count: int) -> None:
        """Record one engine iteration.

        Args:
            prompt_tokens: prompt tokens prefilled in this iteration.
            generation_tokens: tokens generated in this iteration (first tokens included).
            itl_s: the iteration's inter-token gap: seconds since each decoding sequence's previous token.
            itl_count: how many sequences produced a non-first token, each one ``itl_s`` gap.
        """
        if prompt_tokens < 0 or generation_tokens < 0 or itl_count < 0:
            raise ValueError(f"negative step counts: prompt_tokens={prompt_tokens}, "
                             f"generation_tokens={generation_tokens}, itl_count={itl_count}")
        self.prompt_tokens += prompt_tokens
        self.generation_tokens += generation_tokens
        self.inter_token_latency.observe_n(itl_s, itl_count)
        # vLLM reports an iteration only when it has outputs; an idle tick is not an engine step.
        if prompt_tokens or generation_tokens:
            self.iteration_tokens.observe(prompt_tokens + generation_tokens)

    def preempted(self, n: int = 1) -> None:
        """Count ``n`` running sequences evicted back to the waiting queue."""
        if n < 0:
            raise ValueError(f"negative preemption count {n}")
        self.preemptions += n

    def finished(self, *, reason: str, prompt_tokens: int, generation_tokens: int, max_tokens: int | None,
                 queue_s: float, ttft_s: float, e2e_s: float, prefill_s: float, decode_s: float) -> None:
        """Record one finished request, as vLLM does when its engine reports the finish.

        Args:
            reason: one of :data:`FINISH_REASONS` (vLLM's ``finished_reason`` label values).
            prompt_tokens: the request's prompt length.
            generation_tokens: tokens the request generated.
            max_tokens: the request's ``max_tokens`` parameter, or None when it gave none.
            queue_s: arrival in the waiting queue to first scheduled.
            ttft_s: arrival to first token (not observed when no token was generated).
            e2e_s: arrival to finish.
            prefill_s: first scheduled to first token.
            decode_s: first token to last token.
        """
        if reason not in self.request_success:
            raise ValueError(f"unknown finished_reason {reason!r}; vLLM's are {', '.join(FINISH_REASONS)}")
        self.request_success[reason] += 1
        if generation_tokens > 0:
            self.time_to_first_token.observe(ttft_s)
        self.e2e_request_latency.observe(e2e_s)
        self.request_queue_time.observe(queue_s)
        self.request_inference_time.observe(prefill_s + decode_s)
        self.request_prefill_time.observe(prefill_s)
        self.request_decode_time.observe(decode_s)
        self.request_prompt_tokens.observe(prompt_tokens)
        self.request_generation_tokens.observe(generation_tokens)
        # vLLM excludes the first token (it came from prefill) and observes 0 for one-token requests.
        tpot_s = decode_s / (generation_tokens - 1) if generation_tokens > 1 else 0.0
        self.request_time_per_output_token.observe(tpot_s)
        if max_tokens:
            self.request_params_max_tokens.observe(max_tokens)

    def _gauge_values(self) -> tuple[int, int, float]:
        return self._gauges() if self._gauges is not None else (0, 0, 0.0)

    def collect(self) -> Iterator[Metric]:
        """Build the metric families from the current counts (prometheus_client's ``Collector`` protocol)."""
        labels = self._labelvalues
        running, waiting, kv_usage = self._gauge_values()
        yield _gauge("vllm:num_requests_running", "Number of requests in model execution batches.", labels,
                     running)
        yield _gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", labels,
                     waiting)
        by_reason = GaugeMetricFamily(
            "vllm:num_requests_waiting_by_reason",
            "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling "
            "capacity; 'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked "
            "status). Sum of all reasons equals vllm:num_requests_waiting.",
            labels=(*LABEL_NAMES, "reason"))
        # vLLM's WAITING_REASON_CAPACITY / _DEFERRED. The emulator defers nothing (no LoRA budget, no KV
        # transfer): every waiting request waits for capacity.
        by_reason.add_metric((*labels, "capacity"), waiting)
        by_reason.add_metric((*labels, "deferred"), 0)
        yield by_reason
        yield _gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", labels,
                     kv_usage)
        yield _counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", labels,
                       self.preemptions)
        yield _counter("vllm:prompt_tokens", "Number of prefill tokens processed.", labels,
                       self.prompt_tokens)
        yield _counter("vllm:generation_tokens", "Number of generation tokens processed.", labels,
                       self.generation_tokens)
        success = CounterMetricFamily("vllm:request_success", "Count of successfully processed requests.",
                                      labels=(*LABEL_NAMES, "finished_reason"))
        for reason, count in list(self.request_success.items()):
            success.add_metric((*labels, reason), count)
        yield success
        for histogram in self._histograms:
            yield histogram.family(labels)

    def render(self) -> bytes:
        """The Prometheus text exposition of this engine, the body of ``GET /metrics``."""
        return generate_latest(self.registry)

    def snapshot(self) -> dict:
        """Current values as plain JSON-able data, keyed by the sample names a scrape would show.

        Returns:
            ``{"model_name", "engine", "gauges": {name: value}, "counters": {name: value},
            "request_success_total": {finished_reason: count}, "histograms": {name: {"count", "sum",
            "buckets": {le: cumulative count}}}}``; gauge names include ``vllm:`` and counter names end in
            ``_total`` as exposed, bucket keys are the ``le`` strings ending with ``"+Inf"``.
        """
        running, waiting, kv_usage = self._gauge_values()
        histograms = {}
        for histogram in self._histograms:
            buckets = histogram.cumulative()
            histograms[histogram.name] = {
                "count": buckets[-1][1], "sum": histogram.sum, "buckets": dict(buckets),
            }
        return {
            "model_name": self.model_name,
            "engine": self.engine,
            "gauges": {
                "vllm:num_requests_running": running,
                "vllm:num_requests_waiting": waiting,
                "vllm:kv_cache_usage_perc": kv_usage,
            },
            "counters": {
                "vllm:num_preemptions_total": self.preemptions,
                "vllm:prompt_tokens_total": self.prompt_tokens,
                "vllm:generation_tokens_total": self.generation_tokens,
            },
            "request_success_total": dict(self.request_success),
            "histograms": histograms,
        }


def _gauge(name: str, help_text: str, labelvalues: Sequence[str], value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=LABEL_NAMES)
    family.add_metric(labelvalues, value)
    return family


def _counter(name: str, help_text: str, labelvalues: Sequence[str], value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help_text, labels=LABEL_NAMES)
    family.add_metric(labelvalues, value)
    return family
