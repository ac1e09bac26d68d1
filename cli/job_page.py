"""The live job page `nsmigrate metrics` serves beside its gauges: a read-only HTML view of a job (its namespaces with
progress bars, throughput over time, failed batches, verdicts, its cut-over, the audit log's tail), behind the same
basic auth as Flower, reloading itself every few seconds while the job runs. Rendering is a pure function of the job
table's summary, events and cut-over and of the throughput seen so far; the WSGI app around it only routes,
authenticates and reads."""

from __future__ import annotations

import base64
import hmac
import itertools
import json
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import Any

from nsmigrate.orchestrator.errors import NotFound
from nsmigrate.orchestrator.records.namespaces import display_namespace
from nsmigrate.orchestrator.snapshot import JobSummary, RunStatus
from nsmigrate.orchestrator.states import JobState

#: Seconds between reloads of a running job's page.
RELOAD_S = 5
#: Namespaces a page lists (a larger job: the ones to look at first, as `nsmigrate status` orders them).
PAGE_RUNS = 200
#: Audit log events a page shows, the newest.
PAGE_EVENTS = 50
#: Throughput samples kept per job (10 minutes at one reload every 5 s), for this many jobs.
THROUGHPUT_SAMPLES = 120
THROUGHPUT_JOBS = 20

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
progress { width: 12em; }
.failed { color: #b00020; } .passed { color: #1b7f3b; }
code { font-size: 0.9em; }
"""


class Throughput:
    """Vectors copied per second over time, per job, from the job's copied total seen at each load of its page
    (every ``RELOAD_S`` while it is open): the newest ``samples`` of the newest ``jobs`` jobs, so memory stays bounded
    however long the exporter runs. Grafana keeps the long history (``nsmigrate_vectors_copied_total``)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        samples: int = THROUGHPUT_SAMPLES,
        jobs: int = THROUGHPUT_JOBS,
    ) -> None:
        self._clock = clock
        self._samples = samples
        self._jobs = jobs
        self._seen: OrderedDict[int, deque[tuple[float, int]]] = OrderedDict()

    def record(self, job_id: int, copied: int) -> list[float]:
        """Note ``copied`` for ``job_id`` now; returns the rates between consecutive samples, oldest first."""
        seen = self._seen.setdefault(job_id, deque(maxlen=self._samples))
        self._seen.move_to_end(job_id)
        while len(self._seen) > self._jobs:
            self._seen.popitem(last=False)
        seen.append((self._clock(), copied))
        return [max(0.0, (c1 - c0) / (t1 - t0)) for (t0, c0), (t1, c1) in itertools.pairwise(seen) if t1 > t0]


def _sparkline(rates: Sequence[float]) -> str:
    """An inline SVG line of ``rates`` (vectors per second), scaled to its peak."""
    if not rates:
        return "<p>Throughput: shown from the next reload on.</p>"
    width, height, peak = 600, 60, max(max(rates), 1e-9)
    step = width / max(len(rates) - 1, 1)
    points = " ".join(f"{i * step:.1f},{height - rate / peak * (height - 4):.1f}" for i, rate in enumerate(rates))
    return (
        f'<p id="throughput">Throughput: {rates[-1]:,.1f} vectors/s now, {peak:,.1f} at most, over the last '
        f"{len(rates)} reloads</p>"
        f'<svg width="{width}" height="{height}" role="img" aria-label="vectors copied per second">'
        f'<polyline fill="none" stroke="#0b62d6" stroke-width="2" points="{points}"/></svg>'
    )


def _bar(done: int, total: int) -> str:
    return f'<progress value="{done}" max="{max(total, 1)}"></progress> {done:,} / {total:,}'


def _verdict(run: RunStatus) -> str:
    if run.verified_ok is None:
        return ""
    mark, cls = ("passed", "passed") if run.verified_ok else ("failed", "failed")
    return f'<span class="{cls}">{mark}</span> {escape(run.verification or "")}'


def _run_row(run: RunStatus) -> str:
    b = run.batches
    targets = run.target_namespace if run.target_namespace is not None else ", ".join(run.targets)
    error = f'<span class="failed">{escape(run.last_error)}</span>' if run.last_error else ""
    failed = f'<span class="failed">{b.failed}</span>' if b.failed else "0"
    cancelled = f" ({b.cancelled} cancelled)" if b.cancelled else ""
    return (
        f"<tr><td>{escape(display_namespace(run.source_namespace))}</td><td>{escape(display_namespace(targets))}</td>"
        f"<td>{escape(run.state.value)}</td><td>{_bar(run.copied, run.source_count)}</td>"
        f'<td class="num">{b.queued}/{b.running}/{b.done}/{failed}{cancelled}</td>'
        f"<td>{_verdict(run)}</td><td>{error}</td></tr>"
    )


def _cutover(view: Any) -> str:
    """A job's cut-over (``cli.options.CutoverView``): where reads go, the newest window of what the reads saw per
    side (``cutover watch``'s own and the applications'), the newest breach; empty before a rollout began."""
    if view is None or not view.rollout.under_way:
        return ""
    rollout = view.rollout
    since = f", 100 % since {escape(rollout.full_since.isoformat(timespec='seconds'))}" if rollout.full_since else ""
    out = [f'<h2>Cut-over</h2>\n<p id="cutover">Reads <b>{rollout.percent} % new</b>{since}</p>']
    if view.reads is not None:
        detail, at = view.reads
        figures = detail.get("figures") or {}
        instances = int(detail.get("instances") or 0)
        rows = "".join(
            f"<tr><td>{side}</td>"
            + "".join(
                f'<td class="num">{escape(str(figures[side].get(k)))}</td>'
                for k in ("reads", "p50_ms", "p95_ms", "p99_ms", "errors", "empty")
            )
            + f'<td class="num">{(figures[side].get("by_reader") or {}).get("app", 0)}</td></tr>'
            for side in ("new", "old")
            if side in figures
        )
        out.append(
            f"<p>What the reads saw at {detail.get('percent')} % new, over {detail.get('window_s')} s to "
            f"{escape(at[:19])} (<code>cutover watch</code> and {instances} application instance(s)):</p>"
            '<table id="cutover-reads"><tr><th>side</th><th>reads</th><th>P50 ms</th><th>P95 ms</th><th>P99 ms</th>'
            f"<th>errors</th><th>empty where the other answered</th><th>by applications</th></tr>{rows}</table>"
        )
    if view.breach is not None:
        detail, at = view.breach
        problems = "; ".join(detail.get("problems") or [])
        out.append(
            f'<p id="cutover-breach" class="failed">Breach at {escape(at[:19])} with reads {detail.get("percent")} % '
            f"new: {escape(problems)}</p>"
        )
    return "\n".join(out)


def render_job(
    summary: JobSummary, events: Sequence[dict[str, Any]], rates: Sequence[float] = (), cutover: Any = None
) -> str:
    """The page of one job: ``summary`` with at most ``PAGE_RUNS`` runs, the newest ``events``, its throughput over
    time (``Throughput.record``) and its cut-over (``cli.options.CutoverView``, None: none)."""
    t = summary.totals
    reload = f'<meta http-equiv="refresh" content="{RELOAD_S}">' if summary.state == JobState.RUNNING else ""
    states = ", ".join(f"{escape(state.value)}: {n:,}" for state, n in sorted(summary.states.items()))
    shown = (
        f"all {summary.namespaces:,}"
        if len(summary.runs) == summary.namespaces
        else f"{len(summary.runs):,} of {summary.namespaces:,} (failed and unfinished first)"
    )
    log = "".join(
        f"<tr><td>{escape(e['at'][:19])}</td><td>{escape(str(e['actor']))}</td><td>{escape(str(e['action']))}</td>"
        f"<td><code>{escape(json.dumps(e['detail'], default=str))}</code></td></tr>"
        for e in events
    )
    phase = f" ({escape(summary.phase)})" if summary.phase else ""
    heading = (
        f'<p>{escape(summary.kind.value)}, <b id="job-state">{escape(summary.state.value)}</b>{phase}, created '
        f"{escape(summary.created_at.isoformat(timespec='seconds'))}</p>"
    )
    failed = (
        f'<p id="failed-batches" class="{"failed" if summary.failed_batches else ""}">Failed batches: '
        f"{summary.failed_batches:,} in {summary.failed_batch_namespaces:,} namespaces"
        + (
            ""
            if summary.state == JobState.CANCELLED
            else f" (<code>nsmigrate retry {summary.job_id}</code> re-runs them)"
        )
        + "</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{reload}
<title>nsmigrate job {summary.job_id}: {escape(summary.name)}</title><style>{_STYLE}</style></head>
<body>
<p><a href="/">all jobs</a></p>
<h1>Job {summary.job_id}: {escape(summary.name)}</h1>
{heading}
<p>Copied: <span id="job-progress">{_bar(t.copied, t.source)}</span> (listed {t.listed:,},
<span class="{"failed" if t.failed else ""}">{t.failed:,} in failed batches</span>)</p>
{_sparkline(rates)}
<p>Namespaces by state: {states or "none"}</p>
{failed}
{_cutover(cutover)}
<h2>Namespaces ({shown})</h2>
<table id="namespaces"><tr><th>source</th><th>target</th><th>state</th><th>copied</th>
<th>batches queued/running/done/failed</th><th>verification</th><th>error</th></tr>
{"".join(_run_row(run) for run in summary.runs)}</table>
<h2>Audit log (newest {len(events)})</h2>
<table id="events"><tr><th>at (UTC)</th><th>actor</th><th>action</th><th>detail</th></tr>{log}</table>
</body></html>
"""


def render_jobs(jobs: Sequence[dict[str, Any]]) -> str:
    """The index: the newest jobs, each linking to its page."""
    rows = "".join(
        f'<tr><td><a href="/jobs/{j["job_id"]}">{j["job_id"]}</a></td><td>{escape(j["name"])}</td>'
        f"<td>{escape(str(j['kind']))}</td><td>{escape(str(j['state']))}</td><td>{escape(j['created_at'][:19])}</td></tr>"
        for j in jobs
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nsmigrate jobs</title><style>{_STYLE}</style></head>
<body><h1>nsmigrate jobs</h1>
<table><tr><th>job</th><th>name</th><th>kind</th><th>state</th><th>created (UTC)</th></tr>{rows}</table>
</body></html>
"""


_JOB_PATH = re.compile(r"^/jobs/(\d+)$")


def page_app(
    user: str,
    password: str,
    newest_jobs: Callable[[], Sequence[dict[str, Any]]],
    job: Callable[[int], tuple[JobSummary, Sequence[dict[str, Any]]]],
    cutover: Callable[[int], Any] | None = None,
) -> WsgiApp:
    """The pages as a WSGI app: ``/`` (``newest_jobs``) and ``/jobs/N`` (``job(N)``: its summary and events;
    ``cutover(N)``: its cut-over), GET only, every request with Flower's basic auth (``user``, ``password``)."""
    expected = base64.b64encode(f"{user}:{password}".encode()).decode()
    throughput = Throughput()

    def job_page(job_id: int) -> str:
        summary, events = job(job_id)
        view = cutover(job_id) if cutover is not None else None
        return render_job(summary, events, throughput.record(job_id, summary.totals.copied), view)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        given = environ.get("HTTP_AUTHORIZATION", "").removeprefix("Basic ").strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="nsmigrate"')])
            return [b"authentication required\n"]
        if environ.get("REQUEST_METHOD") != "GET":
            start_response("405 Method Not Allowed", [("Allow", "GET")])
            return [b"read-only\n"]
        path = environ.get("PATH_INFO", "/")
        matched = _JOB_PATH.match(path)
        try:
            if path == "/":
                body = render_jobs(newest_jobs())
            elif matched:
                body = job_page(int(matched.group(1)))
            else:
                raise NotFound(f"no page at {path}")
        except NotFound as e:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"{e.message}\n".encode()]
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")])
        return [body.encode()]

    return app
