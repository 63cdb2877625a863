"""``fleetwise replay``: send a real request trace open loop to OpenAI-compatible endpoints; measure it."""

from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fleetwise.cli import checks
from fleetwise.cli.options import TpotSlo, TraceAlias, TraceArg, TtftSlo, accelerator, input_file
from fleetwise.cli.output import console, err_console, print_json
from fleetwise.cli.traffic import Fmt, InputCol, MaxBad, OutputCol, TimeCol, TimeUnit, load_input
from fleetwise.errors import ConfigError, InputFormatError, UnknownNameError
from fleetwise.traffic.durations import parse_duration
from fleetwise.traffic.load import DEFAULT_MAX_BAD_ROWS

PLAIN_PROGRESS_EVERY_S = 5.0

Urls = Annotated[list[str] | None, typer.Option(
    "--url", help="OpenAI-compatible base URL (http://host:port). Repeat to spread requests over several "
    "endpoints by least outstanding tokens.")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="Model name to send (default: the first id from GET <first url>/v1/models).")]
Compress = Annotated[float, typer.Option(
    "--time-compress", help="Send X times faster than the trace and report latencies times X (in the trace's "
    "time): pair with an emulator started with --time-scale X.",
    callback=checks.number(gt=0, what="time-compression factor"))]
Multiply = Annotated[float, typer.Option("--rate-multiply", help="Thin or copy requests to scale the rate.",
                                         callback=checks.number(gt=0, what="rate multiplier"))]
Limit = Annotated[int | None, typer.Option(
    "--limit", help="Replay only the first N requests (of the window).", callback=checks.at_least_one)]
Start = Annotated[str | None, typer.Option(
    "--start", help="Skip this much of the trace first (e.g. 1h, 90s, 0).")]
Duration = Annotated[str | None, typer.Option(
    "--duration", help="Replay only this much of the trace (e.g. 10min).", callback=checks.duration())]
Stream = Annotated[bool, typer.Option(
    "--stream/--no-stream", help="Stream the answers (SSE); without it only E2E is measured (TTFT = E2E).")]
InFlight = Annotated[int, typer.Option(
    "--max-in-flight", help="At most this many requests open at once; more wait, and show as client lag.",
    callback=checks.at_least_one)]
Timeout = Annotated[float, typer.Option(
    "--timeout-s", help="Fail a request unanswered after this many (wall-clock) seconds.",
    callback=checks.positive)]
Ttft = TtftSlo
Tpot = TpotSlo
Out = Annotated[str | None, typer.Option(
    "--out", "-o", help="Write one CSV row per request.", metavar="<path>", callback=checks.output_file())]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (simulate's keys where they mean the same).")]
Report = Annotated[str | None, typer.Option(
    "--report", help="Write an HTML report with plots.", metavar="<path>",
    callback=checks.output_file(".html"))]
Api = Annotated[str, typer.Option(
    "--api", help="completions (token-id prompts, exact lengths) or chat (text, about one word per token).")]
HttpClient = Annotated[str, typer.Option("--http-client", help="aiohttp or httpx.")]
ApiKey = Annotated[str | None, typer.Option("--api-key", help="Send 'Authorization: Bearer KEY'.")]
Share = Annotated[bool, typer.Option(
    "--share-prefixes/--no-share-prefixes",
    help="Equal prefix-block ids of the trace (Mooncake hash_ids) get equal prompt tokens.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of --rate-multiply.", callback=checks.seed)]
CompareSim = Annotated[bool, typer.Option(
    "--compare-sim", help="Also simulate the sent requests on the fleet below and show measured vs simulated "
    "with the gap per percentile. The model is --model or the endpoint's; it must be in the fleetwise catalog.")]
SimGpu = Annotated[str, typer.Option("--gpu", help="--compare-sim: GPU type of each engine.")]
SimGpus = Annotated[int, typer.Option("--gpus", help="--compare-sim: GPUs per engine (tensor parallel).",
                                      callback=checks.at_least_one)]
SimPrec = Annotated[str, typer.Option("--precision", help="--compare-sim: precision (bf16, fp8, int4, ...).")]
SimEngine = Annotated[str, typer.Option("--engine", help="--compare-sim: engine profile (vllm, sglang, trtllm).")]
SimEngines = Annotated[int | None, typer.Option(
    "--engines", help="--compare-sim: engines in the fleet (default: one per --url).",
    callback=checks.at_least_one)]
SimSeqs = Annotated[int | None, typer.Option(
    "--max-num-seqs", help="--compare-sim: batch cap per engine (default: the engine profile's).",
    callback=checks.at_least_one)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")]
Deterministic = Annotated[float, typer.Option(
    "--deterministic-share", help="Share of requests sent with temperature 0 (cacheable); the rest get "
    "--temperature. A trace does not record it: state your assumption.", callback=checks.fraction)]
Temperature = Annotated[float, typer.Option(
    "--temperature", help="Temperature of the requests that are not deterministic.",
    callback=checks.number(gt=0, le=2, why="OpenAI's range; 0 is deterministic"))]
Duplicates = Annotated[float, typer.Option(
    "--duplicate-share", help="Share of requests that repeat one of the last --duplicate-window deterministic "
    "requests whole (retries, refreshes), at their own arrival time.", callback=checks.fraction)]
DupWindow = Annotated[int, typer.Option(
    "--duplicate-window", help="A repeat copies one of this many previous deterministic requests.",
    callback=checks.at_least_one)]


def _trace(path: Path, start: str | None, duration: str | None, multiply: float, limit: int | None, seed: int,
           **load_opts):
    """The requests to replay: the file's trace, windowed, rate-multiplied, then cut to --limit."""
    from fleetwise.traffic.convert import rate_multiply
    from fleetwise.traffic.records import RequestTrace

    tr = load_input(path, **load_opts)
    if not isinstance(tr, RequestTrace):
        raise InputFormatError(f"{path}: is a rate series; replay needs requests (fleetwise traffic convert "
                               "SERIES -o trace.csv turns a series into a trace, lengths from --lengths-from)")
    if start is not None or duration is not None:
        lo = tr.start_s + _offset(start)
        hi = lo + parse_duration(duration, "--duration") if duration is not None else math.inf
        tr = tr.window(lo, hi)
    if multiply != 1.0 and len(tr):
        tr = rate_multiply(tr, multiply, seed=seed)
    if limit is not None and len(tr) > limit:
        tr = tr.take(np.arange(limit))
    if len(tr) == 0:
        where = f" between --start {start or 0} and --duration {duration}" if start or duration else ""
        raise ConfigError(f"{path}: no requests to replay{where}")
    return tr


def _offset(text: str | None) -> float:
    if text is None or text.strip() in ("0", "0s", "0.0"):
        return 0.0
    return parse_duration(text, "--start")


def _progress_printer(quiet: bool):
    """(callback, context manager): a rich bar on a terminal, a plain line every few seconds otherwise."""
    from contextlib import nullcontext

    if quiet:
        return None, nullcontext()
    if err_console.is_terminal:
        bar = Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err_console,
                       transient=True)
        task = bar.add_task("replay", total=None, info="")

        def update(p) -> None:
            bar.update(task, total=p.total, completed=p.sent, info=f"{p.send_rps:,.1f} req/s sent, "
                       f"{p.in_flight:,} in flight, {p.failed:,} failed")

        return update, bar
    last = [time.monotonic()]

    def plain(p) -> None:
        now = time.monotonic()
        if now - last[0] >= PLAIN_PROGRESS_EVERY_S or p.sent == p.total and p.in_flight == 0:
            last[0] = now
            err_console.print(f"fleetwise: replay: {p.sent:,}/{p.total:,} sent, {p.completed:,} completed, "
                              f"{p.failed:,} failed, {p.in_flight:,} in flight, {p.send_rps:,.1f} req/s, "
                              f"{p.elapsed_s:,.0f} s", highlight=False, soft_wrap=True)

    return plain, nullcontext()


class _Stopper:
    """Ctrl-C or SIGTERM: stop sending and keep what was measured; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.old: dict = {}

    def __enter__(self) -> threading.Event:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, self._handle)
        return self.event

    def _handle(self, signum, frame) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.event.set()

    def __exit__(self, *exc) -> None:
        for sig, handler in self.old.items():
            signal.signal(sig, handler)


def _ms(p: dict) -> str:
    return "/".join("-" if v is None or math.isnan(v) else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
                    for v in p.values())


def _rate(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:,.2f}"


def _table(s: dict) -> Table:
    compressed = s["time_compress"] != 1
    title = "fleetwise replay" + (f" (trace time: wall x {s['time_compress']:g})" if compressed else "")
    t = Table(title=title, box=box.SIMPLE_HEAD, show_header=False)
    t.add_column("")
    t.add_column("", justify="right")
    failed = ", ".join(f"{n:,} {r}" for r, n in s["failed_by_reason"].items())
    rows = [
        ("requests / sent", f"{s['requests']:,} / {s['sent']:,}"),
        ("completed", f"{s['completed']:,}"),
        ("failed", f"{s['failed']:,}" + (f" ({failed})" if failed else "")),
        ("cancelled / not sent", f"{s['cancelled']:,} / {s['not_sent']:,}"),
        ("TTFT ms p50/95/99", _ms(s["ttft_ms"])),
        ("TPOT ms p50/95/99", _ms(s["tpot_ms"])),
        ("ITL ms p50/95/99", _ms(s["itl_ms"])),
        ("E2E ms p50/95/99", _ms(s["e2e_ms"])),
        (f"SLO met (TTFT <= {s['slo']['ttft_ms']:g} ms, TPOT <= {s['slo']['tpot_ms']:g} ms)",
         "-" if math.isnan(s["slo_attainment"]) else f"{s['slo_attainment']:.1%}"),
        ("achieved / trace req/s", f"{_rate(s['achieved_rps'])} / {_rate(s['trace_rps'])}"),
        ("completed req/s, output tok/s", f"{_rate(s['throughput_rps'])}, {s['output_tokens_per_s']:,.0f}"),
        ("client lag ms p50/99", _ms(s["client_lag_ms"])),
        ("late sends (> 10 ms)", f"{s['late_sends']:,} ({s['late_share']:.1%})"),
        ("duration", f"{s['duration_s']:,.1f} s" + (f" ({s['wall_s']:,.1f} s wall)" if compressed else "")),
    ]
    for label, value in rows:
        t.add_row(label, value)
    return t


def _url_table(s: dict) -> Table:
    t = Table(title="per endpoint", box=box.SIMPLE_HEAD)
    for c in ("url", "sent", "completed", "failed", "tokens sent", "TTFT ms p50/95/99"):
        t.add_column(c, justify="left" if c == "url" else "right")
    for u in s["by_url"]:
        t.add_row(u["url"], f"{u['sent']:,}", f"{u['completed']:,}", f"{u['failed']:,}", f"{u['tokens']:,}",
                  _ms(u["ttft_ms"]))
    return t


def _warnings(s: dict) -> None:
    def warn(text: str) -> None:
        err_console.print(f"[yellow]fleetwise: warning:[/] {text}", highlight=False, soft_wrap=True)

    if s["interrupted"]:
        warn(f"interrupted: {s['sent']:,} of {s['requests']:,} requests sent, {s['cancelled']:,} in flight "
             "cancelled; the results cover what was measured")
    if s["late_warning"]:
        why = (f"; {s['in_flight_waits']:,} waited for a free slot (raise --max-in-flight)"
               if s["in_flight_waits"] else "; the client could not keep up (lower the rate)")
        warn(f"{s['late_sends']:,} requests ({s['late_share']:.1%}) were sent more than 10 ms late "
             f"(client lag p99 {s['client_lag_ms']['p99']:,.1f} ms){why}")
    if s["short_outputs"]:
        warn(f"{s['short_outputs']:,} answers had fewer tokens than asked for: does the server honour "
             "ignore_eos / min_tokens?")
    for reason, message in s["first_error_by_reason"].items():
        warn(f"{s['failed_by_reason'][reason]:,} failed as {reason}; first: {message}")


def replay_cmd(
    ctx: typer.Context, trace: TraceArg = None, url: Urls = None, trace_alias: TraceAlias = None,
    model: ModelOpt = None,
    fmt: Fmt = "auto", time_col: TimeCol = None, input_col: InputCol = None, output_col: OutputCol = None,
    time_unit: TimeUnit = None, max_bad_rows: MaxBad = DEFAULT_MAX_BAD_ROWS,
    compress: Compress = 1.0, multiply: Multiply = 1.0, seed: Seed = 0, limit: Limit = None,
    start: Start = None, duration: Duration = None, stream: Stream = True, max_in_flight: InFlight = 1024,
    timeout_s: Timeout = 600.0, ttft_ms: Ttft = 1000.0, tpot_ms: Tpot = 50.0, api: Api = "completions",
    http_client: HttpClient = "aiohttp", api_key: ApiKey = None, share_prefixes: Share = True,
    compare_sim: CompareSim = False, gpu: SimGpu = "h100", gpus: SimGpus = 1, precision: SimPrec = "fp8",
    engine: SimEngine = "vllm", engines: SimEngines = None, max_num_seqs: SimSeqs = None,
    deterministic_share: Deterministic = 1.0, temperature: Temperature = 0.7,
    duplicate_share: Duplicates = 0.0, duplicate_window: DupWindow = 50,
    out: Out = None, json_out: Json = False, report: Report = None, quiet: Quiet = False,
) -> None:
    """Replay a request trace open loop against OpenAI-compatible endpoints; measure TTFT, TPOT, ITL, E2E.

    Each request is sent at its trace arrival time (divided by --time-compress) whatever happened to earlier
    ones, as token-id prompts of the trace's input length with max_tokens = min_tokens = its output length
    and ignore_eos (vLLM/SGLang). Several --url share the load by least outstanding tokens (input + output
    tokens sent and not finished; ties go to the first URL), the simulator's default router: e.g. the
    workers of 'fleetwise emulate --workers 4 --port-base 8001'. Failures are counted by reason (http_<status>,
    timeout, connection_lost, incomplete) and never stop the run; Ctrl-C or SIGTERM stops sending, cancels
    what is in flight and still writes what was measured (exit code 0, 'interrupted' in --json).
    slo_attainment uses simulate's default targets (1000 ms TTFT, 50 ms TPOT) unless given.
    With --compare-sim the sent requests are also simulated on --engines engines of the replica given by
    --gpu/--gpus/--precision/--engine, and --json gains 'simulated' and 'gap' ((measured - simulated) /
    simulated per percentile of TTFT and TPOT).
    Requests are deterministic (temperature 0) and distinct unless --deterministic-share / --duplicate-share
    say otherwise (e.g. to measure a gateway's cache and de-duplication; --seed draws them).
    """
    from fleetwise.replay import APIS, HTTP_CLIENTS, RequestMix, find_model, normalize_url, replay_trace

    trace = input_file(trace, trace_alias, "TRACE", "--trace", required=True)
    if not url:
        raise ConfigError("give at least one --url (an OpenAI-compatible base URL)")
    gpu, gpus = accelerator(gpu, gpus, ctx)

    if api not in APIS:
        raise ConfigError(f"--api must be one of {', '.join(APIS)} (got '{api}')")
    if http_client not in HTTP_CLIENTS:
        raise ConfigError(f"--http-client must be one of {', '.join(HTTP_CLIENTS)} (got '{http_client}')")
    try:
        urls = [normalize_url(u) for u in url]
    except ConfigError as exc:  # the library names the value; the command names its flag
        raise ConfigError(f"--url: {exc}") from None
    mix = RequestMix(deterministic_share=deterministic_share, temperature=temperature,
                     duplicate_share=duplicate_share, duplicate_window=duplicate_window, seed=seed)
    if start is not None:
        _offset(start)  # a bad --start fails before the trace is read
    tr = _trace(trace, start, duration, multiply, limit, seed, fmt=fmt, time_col=time_col,
                input_col=input_col, output_col=output_col, time_unit=time_unit, max_bad_rows=max_bad_rows)
    headers = {"authorization": f"Bearer {api_key}"} if api_key else None
    given = model is not None
    if model is None:
        model = find_model(urls[0], headers)
    fleet = None
    if compare_sim:  # resolved before the replay: a typo must not cost the whole run
        fleet = _sim_fleet(model, given, urls[0], gpu, gpus, precision, engine, engines, max_num_seqs,
                           ttft_ms, tpot_ms)
    if not quiet:
        span = tr.duration_s / compress
        faster = f", {compress:g}x faster than the trace" if compress != 1 else ""
        err_console.print(f"fleetwise: replaying {len(tr):,} requests of {model} over {span:,.1f} s "
                          f"({len(tr) / max(span, 1e-9):,.1f} req/s{faster}) against {', '.join(urls)}",
                          highlight=False, soft_wrap=True)
    update, shown = _progress_printer(quiet)
    with _Stopper() as stop, shown:
        result = replay_trace(tr, urls, model=model, time_compress=compress, stream=stream,
                              max_in_flight=max_in_flight, timeout_s=timeout_s, api=api, progress=update,
                              stop_event=stop, share_prefixes=share_prefixes, headers=headers,
                              http_client=http_client, mix=mix)
    summary = result.summary(ttft_ms=ttft_ms, tpot_ms=tpot_ms)
    if fleet is not None and summary["sent"]:  # stopped before the first send: nothing to compare
        from fleetwise.replay.compare import compare_with_simulation

        summary = compare_with_simulation(result, fleet, ttft_ms=ttft_ms, tpot_ms=tpot_ms)
    if out:
        result.write_csv(out)
    if report:
        from fleetwise.report.replay import replay_report

        replay_report(report, result, summary, source=str(trace))
    _warnings(summary)
    if json_out:
        print_json({"trace": str(trace), **summary, "mix": mix.as_dict()})
        return
    console.print(_table(summary))
    if len(urls) > 1:
        console.print(_url_table(summary))
    if "gap" in summary:
        console.print(_comparison_table(summary))
    for path in (out, report):
        if path:
            err_console.print(f"fleetwise: wrote {path}", highlight=False)


def _sim_fleet(model: str, given: bool, url: str, gpu: str, gpus: int, precision: str, engine: str,
               engines: int | None, max_num_seqs: int | None, ttft_ms: float, tpot_ms: float):
    """The fleet --compare-sim simulates, checked now; the model must be one the catalog knows."""
    from fleetwise.catalog import load_catalog
    from fleetwise.replay.compare import SimulatedFleet, check_fleet

    try:
        load_catalog().model(model)
    except UnknownNameError as exc:
        where = "" if given else f" (served by {url})"
        raise ConfigError(f"--compare-sim: {exc}{where}; pass --model with a model of the fleetwise "
                          "catalog") from None
    fleet = SimulatedFleet(model, gpu, gpus, precision, engine, engines, max_num_seqs)
    check_fleet(fleet, ttft_ms=ttft_ms, tpot_ms=tpot_ms)
    return fleet


def _comparison_table(s: dict) -> Table:
    from fleetwise.report.replay import comparison_rows

    f = s["simulated"]["fleet"]
    title = (f"measured vs simulated ({f['engines']} x {f['model']} on {f['gpus']} x {f['gpu']}, "
             f"{f['precision']}, {f['engine']})")
    t = Table(title=title, box=box.SIMPLE_HEAD, min_width=len(title) + 4)
    for c in ("metric", "percentile", "measured", "simulated", "gap %"):
        t.add_column(c, justify="left" if c in ("metric", "percentile") else "right")
    for metric, p, measured, simulated, gap in comparison_rows(s):
        t.add_row(metric, p, _num(measured), _num(simulated), gap if isinstance(gap, str) else f"{gap:+.1f}")
    return t


def _num(x) -> str:
    return x if isinstance(x, str) else f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_cmd)
