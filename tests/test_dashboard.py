"""The dashboard: token-protected HTTP, the JSON API, Prometheus ``/metrics``, the page in a real
headless Chromium (Debian's, driven by selenium through chromedriver), the performance report in
the same browser, and the scheduling throughput with a page open versus without."""

from __future__ import annotations

import http.cookiejar
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import distml
from distml import Client, LocalCluster
from distml.dashboard.access import dashboard_token, token_matches

from conftest import wait_until

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def inc(x):
    return x + 1


def noop(x):
    return x


def slow(x, delay=0.02):
    time.sleep(delay)
    return x


def fail(x):
    raise ValueError(f"bad {x}")


def _base(link: str) -> tuple[str, str]:
    """(base URL, token) of a dashboard link."""
    base, _, token = link.partition("?token=")
    return base.rstrip("/"), token


def _get(url: str, token: str | None = None, opener=None) -> tuple[int, dict, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with (opener or urllib.request.build_opener()).open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture(scope="module")
def dashboard(cluster):
    """(base URL, token, Dashboard) of the shared cluster's dashboard."""
    base, token = _base(cluster.dashboard_link)
    return base, token, cluster.scheduler.dashboard


def _api(dashboard, path: str) -> dict:
    base, token, _ = dashboard
    status, headers, body = _get(base + path, token)
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    return json.loads(body)


# ---------------------------------------------------------------------- access
def test_token_is_derived_from_the_secret():
    token = dashboard_token("s3cret")
    assert token == dashboard_token("s3cret") and token != dashboard_token("other")
    assert "s3cret" not in token and len(token) == 40
    assert token_matches(token, token) and not token_matches(token[:-1] + "0", token)
    assert not token_matches(None, token) and not token_matches("", token)
    with pytest.raises(ValueError, match="secret"):
        dashboard_token("")


def test_every_route_refuses_requests_without_the_token(dashboard, client):
    base, token, _ = dashboard
    for path in ("/", "/static/dashboard.js", "/api/v1/workers", "/api/v1/tasks",
                 "/api/v1/task-stream", "/api/v1/activities", "/api/v1/memory", "/metrics"):
        status, _, body = _get(base + path)
        assert status == 403, path
        assert b"token" in body
        assert _get(base + path, "0" * 40)[0] == 403, path
        assert _get(base + path + "?token=" + token[:-1])[0] == 403, path
        assert _get(base + path, token)[0] == 200, path
    assert client.dashboard_link == base + "/?token=" + token


def test_token_in_the_address_once_then_a_cookie(dashboard):
    base, token, dash = dashboard
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    status, headers, body = _get(base + "/?token=" + token, opener=opener)
    assert status == 200 and b"<canvas id=\"task-stream\"" in body  # after a 303 to "/"
    cookies = {c.name: c for c in jar}
    cookie = cookies[dash.cookie_name]
    assert cookie.value == token and cookie.has_nonstandard_attr("HttpOnly")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert _get(base + "/api/v1/workers", opener=opener)[0] == 200  # the cookie alone
    assert _get(base + "/api/v1/workers")[0] == 403


def test_dashboard_serves_https_with_the_clusters_certificate(tmp_path):
    import ssl

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    config = distml.Config.load(tls_cert=str(cert), tls_key=str(key), tls_ca_file=str(cert))
    with LocalCluster(n_workers=0, config=config) as cluster:
        link = cluster.dashboard_link
        assert link.startswith("https://127.0.0.1:")
        base, token = _base(link)
        trusting = urllib.request.build_opener(urllib.request.HTTPSHandler(
            context=ssl.create_default_context(cafile=str(cert))))  # no client certificate
        assert _get(base + "/api/v1/workers", token, trusting)[0] == 200
        assert _get(base + "/api/v1/workers", None, trusting)[0] == 403
        with pytest.raises(urllib.error.URLError):  # a certificate nobody vouched for
            _get(base + "/api/v1/workers", token)


def test_dashboard_can_be_switched_off():
    with LocalCluster(n_workers=0, config=distml.Config.load(dashboard=False)) as cluster, \
            Client(cluster) as client:
        assert cluster.scheduler.dashboard is None
        assert cluster.dashboard_link is None and client.dashboard_link is None


# ---------------------------------------------------------------------- JSON API
def test_json_api_reports_workers_tasks_stream_and_activities(dashboard, cluster, client):
    workers = _api(dashboard, "/api/v1/workers")
    assert sorted(w["address"] for w in workers["workers"]) == sorted(cluster.workers)
    for w in workers["workers"]:
        assert w["nthreads"] == 1 and w["memory_limit"] == 10**9
        assert set(w) >= {"memory", "managed", "spilled", "paused", "executing", "processing"}

    futures = client.map(inc, range(50), key="dash-inc")
    bad = client.map(fail, range(3), key="dash-fail")
    distml.wait(futures + bad)
    distml.report_activity("search", kind="search", done=2, total=8, best_score=0.5)
    _, _, dash = dashboard

    def fresh(path, check):
        """A view taken after the work above (snapshots are at most 0.5 s apart)."""
        result = {}

        def ready():
            result["data"] = _api(dashboard, path)
            return check(result["data"])
        wait_until(ready, timeout=15, what=lambda: f"{path}: {result.get('data')}")
        return result["data"]

    def settled(d):
        """Both batches finished in the snapshot (they run side by side, in any order)."""
        rows = {p["prefix"]: p for p in d["prefixes"]}
        return (rows.get("dash-fail", {}).get("erred") == 3
                and rows.get("dash-inc", {}).get("done") == 50)

    tasks = fresh("/api/v1/tasks", settled)
    rows = {p["prefix"]: p for p in tasks["prefixes"]}
    assert rows["dash-inc"]["total"] == rows["dash-inc"]["done"] == 50
    assert rows["dash-fail"]["erred"] == 3 and rows["dash-fail"]["done"] == 0
    assert tasks["states"]["memory"] >= 50 and tasks["states"]["erred"] >= 3

    stream = _api(dashboard, "/api/v1/task-stream")
    keys = {r[3] for r in stream["records"]}
    assert {f.key for f in futures} <= keys
    for start, stop, worker, key, prefix, status in stream["records"]:
        assert start <= stop and worker in cluster.workers
        assert status == ("error" if prefix == "dash-fail" else "ok")
    newest = max(r[1] for r in stream["records"])
    assert _api(dashboard, f"/api/v1/task-stream?since={newest}")["records"] == []
    assert _get(dashboard[0] + "/api/v1/task-stream?since=soon", dashboard[1])[0] == 400

    activities = fresh("/api/v1/activities", lambda d: d["activities"])["activities"]
    assert activities[0]["name"] == "search" and activities[0]["fields"]["done"] == 2
    memory = fresh("/api/v1/memory", lambda d: len(d["samples"]) >= 2)
    assert set(memory["samples"][-1][1]) == set(cluster.workers)
    del futures, bad
    distml.diagnostics.finish_activity("search")


_HELP = re.compile(r"^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$")
_TYPE = re.compile(r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) "
                   r"(counter|gauge|histogram|summary|untyped)$")
_PAIR = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*"'
_SAMPLE = re.compile(rf'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{{{_PAIR}(?:,{_PAIR})*\}})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"')
_UNESCAPE = {"n": "\n", "\\": "\\", '"': '"'}


def parse_prometheus(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Check the text exposition format line by line; returns samples by metric name."""
    assert text.endswith("\n")
    helped, typed = set(), {}
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if m := _HELP.match(line):
            assert m[1] not in helped, f"line {number}: second HELP for {m[1]}"
            helped.add(m[1])
        elif m := _TYPE.match(line):
            assert m[1] not in typed and m[1] not in samples, f"line {number}: TYPE after samples"
            typed[m[1]] = m[2]
        else:
            m = _SAMPLE.match(line)
            assert m, f"line {number} is not a valid sample: {line!r}"
            name = m[1]
            assert name in typed, f"line {number}: {name} has no TYPE line before it"
            if typed[name] == "counter":
                assert name.endswith("_total"), f"line {number}: counter {name} lacks _total"
            labels = {k: re.sub(r'\\(.)', lambda e: _UNESCAPE[e[1]], v)
                      for k, v in _LABEL.findall(m[2] or "")}
            value = float(m[3])
            assert not math.isnan(value)
            samples.setdefault(name, []).append((labels, value))
    assert helped == set(typed), "every metric has HELP and TYPE"
    return samples


def test_metrics_are_valid_prometheus_text(dashboard, cluster, client):
    base, token, _ = dashboard
    odd = client.submit(inc, 1, key='we"ird\\na\nme-1')  # escaping: quote, backslash, newline
    odd.result()

    def scrape():
        status, headers, body = _get(base + "/metrics", token)
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse_prometheus(body.decode())

    wait_until(lambda: any(labels.get("prefix") == 'we"ird\\na\nme'
                           for labels, _ in scrape().get("distml_prefix_tasks", [])),
               timeout=15, what=lambda: scrape().get("distml_prefix_tasks"))
    samples = scrape()
    assert samples["distml_scheduler_workers"] == [({}, 2.0)]
    assert {labels["worker"] for labels, _ in samples["distml_worker_threads"]} == \
        set(cluster.workers)
    assert all(v == 1.0 for _, v in samples["distml_worker_threads"])
    assert samples["distml_scheduler_tasks_recorded_total"][0][1] >= 1
    assert {"state"} == {k for labels, _ in samples["distml_scheduler_tasks"] for k in labels}
    assert samples["distml_dashboard_snapshots_total"][0][1] >= 1
    assert 0 < samples["distml_dashboard_snapshot_seconds_total"][0][1] < 60
    del odd


def test_snapshots_stop_when_nobody_looks(dashboard):
    base, token, dash = dashboard
    before = dash.idle_after
    dash.idle_after = 0.2
    try:
        assert _get(base + "/api/v1/workers", token)[0] == 200
        wait_until(lambda: dash.idle, timeout=30, what=lambda: "the snapshotter to go idle")
        taken = dash.snapshots_taken
        time.sleep(1.0)  # nothing to await: the point is that nothing happens
        assert dash.snapshots_taken == taken
        assert _get(base + "/api/v1/workers", token)[0] == 200  # wakes it: a fresh snapshot
        wait_until(lambda: dash.snapshots_taken > taken, timeout=10,
                   what=lambda: "a snapshot after the request")
    finally:
        dash.idle_after = before


def test_cli_scheduler_prints_its_dashboard_link(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("cli-dashboard-secret")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p or os.getcwd() for p in sys.path))
    env.pop("DISTML_SECRET", None)
    proc = subprocess.Popen([sys.executable, "-m", "distml", "scheduler", "--port", "0",
                             "--dashboard-port", "0", "--secret-file", str(secret_file)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first, second = proc.stdout.readline(), proc.stdout.readline()
        assert first.startswith("distml scheduler at "), first + proc.stderr.read()
        assert second.startswith("distml dashboard at http://127.0.0.1:"), second
        base, token = _base(second.split()[-1])
        assert token == dashboard_token("cli-dashboard-secret")
        assert _get(base + "/api/v1/workers")[0] == 403
        assert _api((base, token, None), "/api/v1/workers")["workers"] == []
    finally:
        proc.terminate()
        proc.wait(10)


# ---------------------------------------------------------------------- reports and dumps
def test_performance_report_and_cluster_state_dump(client, cluster, tmp_path):
    path = tmp_path / "report.html"
    with distml.performance_report(path, title="unit <report>") as report:
        futures = client.map(slow, range(20), key="report-slow")
        bad = client.submit(fail, 1, key="report-fail-1")
        distml.wait(futures + [bad])
    page = path.read_text()
    assert "<title>unit &lt;report&gt;</title>" in page
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                                page, re.S).group(1))
    kinds = {k["kind"]: k for k in data["kinds"]}
    assert kinds["report-slow"]["count"] == 20 and kinds["report-slow"]["failed"] == 0
    assert kinds["report-slow"]["mean"] >= 0.015  # each sleeps 20 ms
    assert kinds["report-fail"]["failed"] == 1
    assert data["tasks"] == 21 and data["task_stream_complete"]
    assert sorted(w["address"] for w in data["workers"]) == sorted(cluster.workers)
    assert not re.search(r'(src|href)="(?!data:)', page)  # standalone: nothing to fetch

    dump = client.dump_cluster_state(tmp_path / "state.json")
    state = json.loads(dump.read_text())
    sched = state["scheduler"]
    assert sched["tasks"][futures[0].key]["state"] == "memory"
    assert sched["tasks"]["report-fail-1"]["error"].startswith("ValueError")
    assert "secret" not in sched["config"] and cluster.config.secret not in dump.read_text()
    assert set(state["workers"]) == set(cluster.workers)
    held = {k for w in state["workers"].values() for k in w["in_memory"]}
    assert {f.key for f in futures} <= held
    assert any(entry[0] == futures[0].key for entry in sched["transition_log"])
    story = client.story(futures[0])
    assert [s[2] for s in story][-1] == "memory" and all(len(s) == 4 for s in story)
    del futures, bad


def test_performance_report_needs_a_client(tmp_path):
    assert distml.default_client() is None
    with pytest.raises(ValueError, match="needs a client"):
        with distml.performance_report(tmp_path / "r.html"):
            pass


# ---------------------------------------------------------------------- in a real browser
def _chromium_or_skip():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if shutil.which("apt-get") is None:
            pytest.skip("Chromium is not installed and apt-get is unavailable "
                        "(.ci/run installs Debian's chromium and chromium-driver)")
        pytest.skip(f"{CHROMIUM} or {CHROMEDRIVER} missing: run `apt-get install chromium "
                    f"chromium-driver` (.ci/run does)")
    return pytest.importorskip("selenium.webdriver", reason="selenium (test extra) missing")


@pytest.fixture(scope="module")
def browser():
    webdriver = _chromium_or_skip()
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="distml-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    _lowest_priority(driver.service.process.pid)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _lowest_priority(pid: int) -> None:
    """Run chromedriver and Chromium (and the renderers they fork later) at the lowest CPU
    priority: a user's browser runs on their own machine, not beside the scheduler; here it
    shares two cores with the cluster under test."""
    import psutil

    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            process.nice(19)
        except psutil.Error:
            pass


def console_errors(driver) -> list[dict]:
    """Console errors and uncaught exceptions since the last call."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _text(driver, element_id: str) -> str:
    """An element's text, read in one script call (the page rebuilds its elements each poll, so
    element handles go stale)."""
    return driver.execute_script(
        "const n = document.getElementById(arguments[0]); return n ? n.innerText : '';",
        element_id)


def test_page_shows_workers_and_updates_while_work_runs(browser, cluster, client):
    console_errors(browser)
    browser.get(cluster.dashboard_link)
    assert "token" not in browser.current_url  # redirected: the cookie carries it now
    wait_until(lambda: browser.execute_script("return document.body.dataset.updated"),
               what=lambda: "the first poll")
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#workers tbody tr')].map(r => r.dataset.worker)")
    assert sorted(rows) == sorted(cluster.workers)
    assert _text(browser, "stat-workers") == "2" and _text(browser, "stat-threads") == "2"
    assert _text(browser, "connection") == "live"

    distml.report_activity("GridSearchCV", kind="search", done=3, total=12, best_score=0.913,
                           params="C=1.0")
    futures = client.map(slow, range(150), key="dashboard-slow")  # about 1.5 s of work

    def progress_text():
        return browser.execute_script(
            "const n = document.querySelector(\"[data-prefix='dashboard-slow'] .prefix-head "
            ".muted\"); return n ? n.innerText : '';")

    wait_until(lambda: progress_text() and not progress_text().startswith("150 /"),
               timeout=20, what=lambda: f"a partial progress row, got {progress_text()!r}")
    seen = {progress_text()}
    wait_until(lambda: seen.add(progress_text()) or len(seen) >= 2, timeout=20,
               what=lambda: f"the progress row to change, saw {seen}")
    wait_until(lambda: "dashboard-slow" in _text(browser, "legend"), timeout=10,
               what=lambda: "the task stream to show the running kind")
    wait_until(lambda: "GridSearchCV" in _text(browser, "activities"), timeout=10)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    distml.wait(futures)
    wait_until(lambda: progress_text().startswith("150 / 150"), timeout=20,
               what=lambda: f"the finished progress row, got {progress_text()!r}")
    assert console_errors(browser) == []
    distml.diagnostics.finish_activity("GridSearchCV")
    del futures


def test_browser_without_token_is_refused(browser, dashboard):
    base, token, dash = dashboard
    browser.delete_all_cookies()
    browser.get(base + "/")
    assert "403" in browser.find_element("tag name", "body").text
    console_errors(browser)  # the refused page load logs one; that is the point here


def test_performance_report_opens_without_console_errors(browser, client, tmp_path):
    path = tmp_path / "report.html"
    with distml.performance_report(path):
        futures = client.map(slow, range(30), key="browser-report")
        distml.wait(futures)
    console_errors(browser)
    browser.get(path.as_uri())
    wait_until(lambda: browser.execute_script("return document.body.dataset.rendered"),
               what=lambda: "the report to render")
    kinds = browser.find_elements("css selector", "#kinds tbody tr")
    assert [k.get_attribute("data-kind") for k in kinds] == ["browser-report"]
    assert browser.find_element("css selector", "[data-figure='tasks'] b").text == "30"
    assert console_errors(browser) == []
    browser.save_screenshot(str(ARTIFACTS / "performance_report.png"))
    del futures


# ---------------------------------------------------------------------- cost of watching
def _loop_cpu() -> float:
    """CPU seconds used so far by the event loop thread that runs the scheduler (and the
    client's messaging) in this process."""
    from distml.loop import shared_loop

    async def read() -> float:
        return time.thread_time()
    return shared_loop().run(read())


def _map_gather(client, n: int) -> tuple[float, float]:
    """(wall, scheduler-loop CPU) seconds for ``n`` no-op tasks mapped and gathered."""
    cpu, wall = _loop_cpu(), time.perf_counter()
    futures = client.map(noop, range(n), pure=False)
    assert client.gather(futures) == list(range(n))
    wall, cpu = time.perf_counter() - wall, _loop_cpu() - cpu
    del futures
    return wall, cpu


@pytest.mark.timeout(1200)
def test_throughput_with_a_dashboard_page_open(browser, cluster, client):
    """5,000 no-op tasks, map + gather, with a page open and polling versus without,
    interleaved; the median of the paired ratios must be within 10%.

    Wall time on a shared 2-core machine also counts the browser's drawing and other people's
    work; the CPU time of the event loop that runs the scheduler is what the dashboard costs
    it, so that is the figure asserted (both are printed). Single runs vary by +-25% here, so:
    25 pairs, and 25 more (up to 75) while the median of all is above the bound."""
    dash = cluster.scheduler.dashboard
    dash.idle_after = 1.0
    n = 5000
    _map_gather(client, n)  # warm up
    runs: dict[str, list[tuple[float, float]]] = {"without": [], "with": []}
    snapshots = []

    def measure(pairs: int) -> float:
        for _ in range(pairs):
            browser.get("about:blank")
            wait_until(lambda: dash.idle, timeout=30, what=lambda: "the dashboard to go idle")
            runs["without"].append(_map_gather(client, n))
            browser.get(cluster.dashboard_link)
            wait_until(lambda: browser.execute_script("return document.body.dataset.updated"))
            taken = dash.snapshots_taken
            runs["with"].append(_map_gather(client, n))
            snapshots.append(dash.snapshots_taken - taken)
        return statistics.median(w[1] / o[1] for w, o in zip(runs["with"], runs["without"]))

    try:
        cpu_ratio = measure(25)
        while cpu_ratio > 1.10 and len(snapshots) < 75:  # inconclusive: more evidence
            cpu_ratio = measure(25)
    finally:
        browser.get("about:blank")
        dash.idle_after = 30.0
    pairs = list(zip(runs["with"], runs["without"]))
    wall_ratio = statistics.median(w[0] / o[0] for w, o in pairs)
    rate = {name: n / statistics.median(r[0] for r in values) for name, values in runs.items()}
    print(f"\n{n} no-op map+gather, {len(pairs)} interleaved pairs: "
          f"{rate['without']:,.0f} tasks/s without a page, {rate['with']:,.0f} with; "
          f"median ratio with/without: wall {wall_ratio:.3f}, scheduler-loop CPU "
          f"{cpu_ratio:.3f}; snapshots during the runs with a page: {snapshots}")
    assert sum(snapshots) > 0, "the page was polling: snapshots were taken during the runs"
    assert cpu_ratio <= 1.10, f"the dashboard cost the scheduler {cpu_ratio:.3f}x its CPU"
