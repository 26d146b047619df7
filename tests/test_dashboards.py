"""The Grafana dashboard (deploy/grafana/relay.json) and the Prometheus alert rules
(deploy/prometheus/alerts.yml) query only what relay exports.

A small PromQL tokenizer takes every metric name out of their expressions; a real `relay serve`,
given a presenter, an attendee, a refused join and forged, replayed and stray packets so that the
labelled families have samples, is scraped, and each name must be one of its series. The
structure Grafana and Prometheus need is checked too: a datasource and targets on every panel,
and on every alert an expression, a `for`, a severity and a summary.
"""

from __future__ import annotations

import json
import re
import struct
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from control.metrics import ControlCounters, RelayCollector
from control.stats import StatsAggregator
from tests.test_serve import (
    Participant,
    bound_socket,
    create_webinar,
    join,
    settle,
    start_serve,
    stop_serve,
)

pytestmark = pytest.mark.release_only  # tests/conftest.py: not on the debug build

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "relay.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

# Prometheus's own series, which relay does not export.
PROMETHEUS_OWN = {"up"}
# Families a dashboard may show that this test cannot give a sample without a whole WebRTC
# session ending: they must still be exported (their HELP and TYPE), and nothing more.
WITHOUT_SAMPLES_HERE = {"relay_webrtc_ended_total"}

# --- the PromQL tokenizer ---------------------------------------------------------------------

# PromQL's functions (Prometheus 2.x and 3.x); an identifier followed by "(" that is none of
# these nor an aggregation is an error, so a misspelt function is caught, not taken for a metric.
FUNCTIONS = frozenset(
    """abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes
    clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year
    days_in_month deg delta deriv double_exponential_smoothing end exp floor histogram_avg
    histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar
    histogram_sum holt_winters hour idelta increase info irate label_join label_replace
    last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi
    predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh
    sort sort_by_label sort_by_label_desc sort_desc sqrt start stddev_over_time stdvar_over_time
    sum_over_time tan tanh time timestamp vector year""".split()
)
AGGREGATIONS = frozenset(
    """sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk
    limit_ratio""".split()
)
# Keywords after which "(...)" lists label names.
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = GROUPING | {"bool", "offset", "and", "or", "unless", "atan2", "inf", "nan"}

TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<variable>\$\{[A-Za-z_][A-Za-z0-9_:.]*\}|\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+(?:ms|[smhdwy]))+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<identifier>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<open>[({\[])
  | (?P<close>[)}\]])
  | (?P<operator>=~|!~|!=|==|<=|>=|[-+*/%^<>=,@])
    """,
    re.VERBOSE,
)
CLOSES = {"(": ")", "{": "}", "[": "]"}


def tokens(expr: str) -> Iterator[tuple[str, str]]:
    """(kind, text) of each token of `expr`, spaces left out; ValueError on a character that
    starts no token (an unclosed string among them)."""
    position = 0
    while position < len(expr):
        match = TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot read {expr[position : position + 20]!r} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            yield kind, match.group()
        position = match.end()


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression queries. ValueError when its parentheses, braces
    or brackets do not balance, or it calls a function PromQL does not have."""
    found: set[str] = set()
    stack: list[str] = []  # what each open bracket holds: "{", "[", "labels" or "("
    listed = list(tokens(expr))
    for k, (kind, text) in enumerate(listed):
        after = listed[k + 1][1] if k + 1 < len(listed) else ""
        if kind == "open":
            before = listed[k - 1][1] if k else ""
            stack.append("labels" if text == "(" and before in GROUPING else text)
        elif kind == "close":
            if not stack or CLOSES[stack[-1] if stack[-1] != "labels" else "("] != text:
                raise ValueError(f"unbalanced {text!r} in {expr!r}")
            stack.pop()
        elif kind == "identifier":
            if stack and stack[-1] in ("{", "[", "labels"):
                continue  # a label name, or inside a range
            if text in KEYWORDS:
                continue
            if after == "(":
                if text not in FUNCTIONS and text not in AGGREGATIONS:
                    raise ValueError(f"no PromQL function {text!r} in {expr!r}")
                continue
            if text in AGGREGATIONS and after in GROUPING:
                continue  # sum by (...) (...): the aggregation before its grouping
            found.add(text)
    if stack:
        raise ValueError(f"unclosed {stack[-1]!r} in {expr!r}")
    return found


# Grafana's template queries: label_values(metric or selector, label), or label_values(label).
LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<selector>.*),)?\s*(?P<label>\w+)\s*\)\s*$")


def variable_metric_names(query: str) -> set[str]:
    """The metric names one of Grafana's Prometheus template queries reads."""
    match = LABEL_VALUES.match(query)
    if match is None:
        return metric_names(query)
    selector = match.group("selector")
    return metric_names(selector) if selector else set()


# --- what the dashboard and the rules query -----------------------------------------------------


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside rows included; rows themselves left out."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p["targets"]]


def dashboard_metrics(dashboard: dict[str, Any]) -> set[str]:
    names = set().union(*(metric_names(e) for e in dashboard_expressions(dashboard)))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            names |= variable_metric_names(query["query"] if isinstance(query, dict) else query)
    return names


def alert_rules(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in rules["groups"] for rule in group["rules"]]


def alert_metrics(rules: dict[str, Any]) -> set[str]:
    return set().union(*(metric_names(r["expr"]) for r in alert_rules(rules)))


def load_dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def load_alerts() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ALERTS.read_text())
    return loaded


# --- what /metrics exports ----------------------------------------------------------------------

SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}


def series(families: Iterable[Metric]) -> dict[str, Metric]:
    """Each series name PromQL can query (a counter's with `_total`; a histogram's `_bucket`,
    `_sum` and `_count`, and those only for a histogram) -> its family."""
    out: dict[str, Metric] = {}
    for family in families:
        for suffix in SERIES_SUFFIXES.get(family.type, ("",)):
            out[family.name + suffix] = family
    return out


def unexported(names: Iterable[str], exported: dict[str, Metric]) -> set[str]:
    """The queried names that are neither a series of `exported` nor Prometheus's own."""
    return {n for n in names if n not in exported and n not in PROMETHEUS_OWN}


def without_samples(names: Iterable[str], exported: dict[str, Metric]) -> set[str]:
    """The queried names whose series has no sample (its family says HELP and TYPE only)."""
    return {n for n in names if n in exported and all(s.name != n for s in exported[n].samples)}


def in_memory_families() -> list[Metric]:
    """What the collector exports given one worker's report: no server needed."""
    stats = StatsAggregator()
    stats.receive({"worker": 0, "counters": {"packets_in": 1, "dropped": {"auth": 1}}}, now=0.0)
    registry = CollectorRegistry()
    registry.register(RelayCollector(stats, ControlCounters(), lambda: (1, 2), lambda: 0.0))
    return list(text_string_to_metric_families(generate_latest(registry).decode()))


# --- the tokenizer's own tests ------------------------------------------------------------------


def test_the_tokenizer_finds_metrics_not_functions_keywords_or_labels() -> None:
    expr = (
        'sum by (instance, reason) (rate(relay_packets_dropped_total{reason!~"auth|replay",'
        ' instance=~"$instance"}[$__rate_interval])) / on (instance) group_left '
        "sum without (worker) (rate(relay_packets_in_total[5m] offset 1h30m)) > bool 0.05 "
        "and on (instance) max(relay_worker_up) unless ignoring (job) up == 0"
    )
    assert metric_names(expr) == {
        "relay_packets_dropped_total",
        "relay_packets_in_total",
        "relay_worker_up",
        "up",
    }
    quantile = (
        "histogram_quantile(0.9, sum by (le) (rate(relay_receiver_rtt_seconds_bucket[5m]))) "
        '+ topk(3, relay_meetings) + count_values("x", relay_participants) * 1e3'
    )
    assert metric_names(quantile) == {
        "relay_receiver_rtt_seconds_bucket",
        "relay_meetings",
        "relay_participants",
    }
    assert metric_names('{__name__="x"}') == set()  # a label matcher names no metric
    assert variable_metric_names('label_values(relay_worker_up{instance=~"$instance"}, worker)')
    assert variable_metric_names("label_values(instance)") == set()


@pytest.mark.parametrize(
    "bad",
    [
        "sum(rate(relay_packets_in_total[5m])",  # a parenthesis left open
        "rate(relay_packets_in_total[5m]))",  # one closed twice
        'relay_packets_in_total{reason="auth"',  # a brace left open
        'sum(relay_packets_in_total{reason="a")}',  # crossed
        "rat(relay_packets_in_total[5m])",  # no such function
        'relay_packets_in_total{reason="auth}',  # a string left open
    ],
)
def test_the_tokenizer_refuses_what_does_not_parse(bad: str) -> None:
    with pytest.raises(ValueError):
        metric_names(bad)


def test_a_made_up_metric_in_a_copy_of_the_dashboard_is_caught() -> None:
    """The check can fail: the dashboard passes against what the collector exports, and a copy
    with one made-up metric, or a non-histogram's name with `_bucket`, does not."""
    exported = series(in_memory_families())
    dashboard = load_dashboard()
    assert unexported(dashboard_metrics(dashboard), exported) == set()
    assert unexported(alert_metrics(load_alerts()), exported) == set()
    copy = json.loads(json.dumps(dashboard))
    first = next(panels(copy))
    first["targets"].append(
        {"refId": "Z", "expr": 'sum(rate(relay_made_up_total{instance=~"$instance"}[5m]))'}
    )
    first["targets"].append({"refId": "Y", "expr": "relay_packets_in_bucket"})
    assert unexported(dashboard_metrics(copy), exported) == {
        "relay_made_up_total",
        "relay_packets_in_bucket",
    }
    # A histogram's series are its _bucket, _sum and _count, and not its bare name.
    assert unexported(["relay_receiver_rtt_seconds_count"], exported) == set()
    assert unexported(["relay_receiver_rtt_seconds"], exported) == {"relay_receiver_rtt_seconds"}


# --- structure ----------------------------------------------------------------------------------

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
DURATION = re.compile(r"^(?:\d+(?:ms|[smhdwy]))+$")


def test_the_dashboard_is_importable_and_every_panel_queries_prometheus() -> None:
    dashboard = load_dashboard()
    (source,) = dashboard["__inputs"]
    assert source["name"] == "DS_PROMETHEUS" and source["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for name in ("instance", "worker"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == DATASOURCE
        assert variables[name]["multi"] and variables[name]["includeAll"]
    ids = [p["id"] for p in dashboard["panels"]]
    ids += [p["id"] for row in dashboard["panels"] for p in row.get("panels", [])]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    shown = list(panels(dashboard))
    assert len(shown) >= 15
    per_worker = 0
    for panel in shown:
        title = panel["title"]
        assert panel["datasource"] == DATASOURCE, title
        assert panel["targets"], f"{title}: no targets"
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, title
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, title
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{title}: refIds repeat"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, title
            expr = target["expr"]
            assert metric_names(expr), f"{title}: {expr!r} queries no metric"
            # Per node by the instance variable; a line per worker by the worker variable.
            assert 'instance=~"$instance"' in expr, f"{title}: {expr!r}"
            if "{{worker}}" in target["legendFormat"]:
                assert 'worker=~"$worker"' in expr, f"{title}: {expr!r}"
                per_worker += 1
    assert per_worker >= 5, "the worker variable filters nothing"
    # The figures the dashboard is for, each on some panel.
    queried = dashboard_metrics(dashboard)
    for name in (
        "relay_packets_in_total",
        "relay_packets_out_total",
        "relay_bytes_in_total",
        "relay_bytes_out_total",
        "relay_worker_packets_in_total",
        "relay_worker_packets_out_total",
        "relay_worker_bytes_in_total",
        "relay_worker_bytes_out_total",
        "relay_worker_packets_dropped_total",
        "relay_worker_up",
        "relay_packets_dropped_total",
        "relay_joins_total",
        "relay_join_failures_total",
        "relay_participants",
        "relay_meetings",
        "relay_worker_restarts_total",
        "relay_receiver_loss_ratio_bucket",
        "relay_receiver_jitter_seconds_bucket",
        "relay_receiver_rtt_seconds_bucket",
        "relay_nacks_total",
        "relay_retransmissions_total",
        "relay_dtls_handshakes_total",
        "relay_ice_checks_total",
    ):
        assert name in queried, f"no panel shows {name}"


def test_every_alert_has_an_expression_a_duration_a_severity_and_a_summary() -> None:
    rules = load_alerts()
    assert [g["name"] for g in rules["groups"]] == ["relay"]
    alerts = alert_rules(rules)
    names = [r["alert"] for r in alerts]
    assert len(names) == len(set(names)), "alert names repeat"
    for rule in alerts:
        name = rule["alert"]
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert DURATION.match(str(rule["for"])), f"{name}: for {rule['for']!r}"
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert rule["annotations"]["summary"].strip(), name
        assert metric_names(rule["expr"]), f"{name}: its expression queries no metric"
    queried = alert_metrics(rules)
    for name in (
        "up",
        "relay_worker_up",
        "relay_worker_restarts_total",
        "relay_packets_dropped_total",
        "relay_join_failures_total",
        "relay_receiver_loss_ratio_bucket",
        "relay_receiver_rtt_seconds_bucket",
        "relay_packets_out_total",
        "relay_participants",
    ):
        assert name in queried, f"no alert watches {name}"
    # Authentication failures and replays each have their own rule.
    exprs = {r["alert"]: r["expr"] for r in alerts}
    assert any('reason="auth"' in e for e in exprs.values())
    assert any('reason="replay"' in e for e in exprs.values())


# --- against a running server -------------------------------------------------------------------


def sender_report(ssrc: int, ntp: int) -> bytes:
    """An SR without report blocks (RFC 3550 section 6.4.1)."""
    return struct.pack("!BBHIQIII", 0x80, 200, 6, ssrc, ntp, 960, 10, 1000)


def receiver_report(reporter: int, about: int, fraction: int, jitter: int, lsr: int) -> bytes:
    """An RR with one report block about `about` (RFC 3550 section 6.4.2), DLSR 0."""
    block = struct.pack("!IB3sIIII", about, fraction, (4).to_bytes(3, "big"), 100, jitter, lsr, 0)
    return struct.pack("!BBHI", 0x81, 201, 7, reporter) + block


def scrape(api: Any) -> dict[str, Metric]:
    r = api.get("/metrics")
    assert r.status_code == 200, r.text
    return series(text_string_to_metric_families(r.text))


def sample(exported: dict[str, Metric], name: str, **labels: str) -> float:
    """The value of one series (0 if absent)."""
    family = exported.get(name)
    if family is None:
        return 0.0
    for s in family.samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return 0.0


def test_every_metric_the_dashboard_and_the_alerts_query_is_on_metrics(tmp_path: Path) -> None:
    serve = start_serve(tmp_path / "data", 2)
    people: list[Participant] = []
    stray = bound_socket()
    try:
        meeting, host_key = create_webinar(serve)
        with serve.api() as api:
            # A refused join: relay_join_failures_total{reason=...}.
            listen = stray.getsockname()
            r = api.post(
                f"/v1/meetings/{meeting}/join",
                json={"name": "x", "password": "wrong", "receive_at": f"{listen[0]}:{listen[1]}"},
                headers={"Authorization": ""},
            )
            assert r.status_code in (401, 403), r.text
            presenter = join(api, meeting, "presenter", 0x4000, role="host", host_key=host_key)
            attendee = join(api, meeting, "attendee", None)
            people = [presenter, attendee]
            attendee.hello()
            settle(people, 0.2)
            for n in range(20):
                presenter.send(b"media %d" % n)
            # A sender report, forwarded, then the attendee's report about that stream:
            # loss, jitter and (from the SR's time) round-trip time for the histograms.
            ntp = 0x83AA7E80_12345678
            presenter.sock.sendto(
                presenter.tx.protect_rtcp(sender_report(0x4000, ntp)), presenter.relay
            )
            settle(people, 0.2)
            reporter = 0x7000_0000 + (hash(attendee.id) & 0xFFFF)  # the SSRC of its hello()
            rr = receiver_report(reporter, 0x4000, 13, 480, (ntp >> 16) & 0xFFFFFFFF)
            attendee.sock.sendto(attendee.tx.protect_rtcp(rr), attendee.relay)
            # A forged tag (reason auth) and a packet played twice (reason replay).
            header = struct.pack("!BBHII", 0x80, 111, presenter.seq, presenter.seq * 960, 0x4000)
            presenter.seq += 1
            packet = presenter.tx.protect(header + b"twice")
            presenter.sock.sendto(packet, presenter.relay)
            presenter.sock.sendto(packet, presenter.relay)
            header = struct.pack("!BBHII", 0x80, 111, presenter.seq, presenter.seq * 960, 0x4000)
            presenter.seq += 1
            forged = bytearray(presenter.tx.protect(header + b"forged"))
            forged[-1] ^= 1  # the last byte of its authentication tag
            presenter.sock.sendto(bytes(forged), presenter.relay)
            # DTLS from an address no WebRTC peer checked from: relay_webrtc_dropped_total.
            stray.sendto(b"\x16\xfe\xfd" + bytes(30), ("127.0.0.1", serve.media_port))
            settle(people, 0.2)

            # The workers push once a second; wait until every figure above has arrived.
            deadline = time.monotonic() + 10
            while True:
                exported = scrape(api)
                arrived = {
                    "join failure": sample(exported, "relay_join_failures_total") >= 1,
                    "auth": sample(exported, "relay_packets_dropped_total", reason="auth") >= 1,
                    "replay": sample(exported, "relay_packets_dropped_total", reason="replay") > 0,
                    "rtt": sample(exported, "relay_receiver_rtt_seconds_count") >= 1,
                    "loss": sample(exported, "relay_receiver_loss_ratio_count") >= 1,
                    "dtls": sample(exported, "relay_webrtc_dropped_total") >= 1,
                    "workers": sample(exported, "relay_worker_up", worker="0")
                    + sample(exported, "relay_worker_up", worker="1")
                    == 2,
                }
                if all(arrived.values()):
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"not on /metrics after 10 s: {arrived}")
                time.sleep(0.2)

        queried = dashboard_metrics(load_dashboard()) | alert_metrics(load_alerts())
        assert unexported(queried, exported) == set()
        assert without_samples(queried, exported) <= WITHOUT_SAMPLES_HERE
        for name in WITHOUT_SAMPLES_HERE:
            assert name in exported, name
        # The per-worker families have both workers; worker 0 took the meeting's packets.
        assert sample(exported, "relay_worker_packets_in_total", worker="0") >= 20
        assert sample(exported, "relay_worker_packets_dropped_total", worker="0") >= 2
        for name in ("relay_worker_packets_out_total", "relay_worker_bytes_in_total"):
            workers = {s.labels["worker"] for s in exported[name].samples}
            assert workers == {"0", "1"}, name
        total_in = sample(exported, "relay_packets_in_total")
        by_worker = sum(s.value for s in exported["relay_worker_packets_in_total"].samples)
        assert by_worker == total_in
    finally:
        for p in people:
            p.close()
        stray.close()
        stop_serve(serve)
