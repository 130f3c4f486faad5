"""The request path's plain-number metrics expose exactly what prometheus-client's own would."""

import re

import pytest
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from user_service.infrastructure.telemetry.loop_metrics import LoopGauge, LoopHistogram

BUCKETS = (0.005, 0.01, 0.025, 0.1, 1.0)
# Below the first bound, on a bound (le is inclusive), between bounds, above the last, zero.
AMOUNTS = (0.001, 0.005, 0.0051, 0.01, 0.02, 0.025, 0.5, 1.0, 3.0, 0.0)


def _pair() -> tuple[CollectorRegistry, CollectorRegistry, Histogram, LoopHistogram]:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    labels = ["method", "route"]
    reference = Histogram("req_seconds", "Duration.", labels, buckets=BUCKETS, registry=theirs)
    loop = LoopHistogram("req_seconds", "Duration.", labels, buckets=BUCKETS, registry=ours)
    return theirs, ours, reference, loop


def _without_created(text: bytes) -> bytes:
    """The exposition without `_created` series (the service turns them off) and without the exemplars'
    timestamps (the clock at each observation)."""
    lines = (line for line in text.split(b"\n") if b"_created" not in line)
    return b"\n".join(re.sub(rb"(# \{[^}]*\} \S+) \S+$", rb"\1", line) for line in lines)


def test_a_histogram_exposes_what_prometheus_clients_would_in_both_formats() -> None:
    theirs, ours, reference, loop = _pair()
    for index, amount in enumerate(AMOUNTS):
        route = "/a" if index % 3 else "/b"
        exemplar = {"trace_id": f"{index:032x}"} if index % 4 == 0 else None
        reference.labels("GET", route).observe(amount, exemplar)
        loop.labels("GET", route).observe(amount, exemplar)
    reference.labels("POST", "/a")  # a series made and never observed shows as zeros in both
    loop.labels("POST", "/a")

    assert _without_created(generate_latest(ours)) == _without_created(generate_latest(theirs))
    openmetrics = _without_created(generate_openmetrics(ours))
    assert openmetrics == _without_created(generate_openmetrics(theirs))
    assert b'# {trace_id="' in openmetrics  # the exemplars are there, on the buckets they fell in


def test_an_exemplar_is_on_the_bucket_of_its_observation_and_the_latest_wins() -> None:
    _, ours, _, loop = _pair()
    series = loop.labels("GET", "/a")
    series.observe(0.02, {"trace_id": "a" * 32})
    series.observe(0.03, {"trace_id": "b" * 32})
    series.observe(0.021, {"trace_id": "c" * 32})
    lines = generate_openmetrics(ours).decode().splitlines()
    by_le = {line.split('le="')[1].split('"')[0]: line for line in lines if "_bucket" in line}
    assert 'trace_id="c' in by_le["0.025"]
    assert 'trace_id="b' in by_le["0.1"]
    assert "#" not in by_le["0.01"]


def test_a_gauge_counts_what_is_in_progress_as_prometheus_clients_would() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Gauge("active", "In flight.", ["method"], registry=theirs)
    loop = LoopGauge("active", "In flight.", ["method"], registry=ours)
    for gauge in (reference, loop):
        get, post = gauge.labels("GET"), gauge.labels("POST")
        get.inc()
        get.inc()
        post.inc()
        get.dec()
        post.dec()
    assert generate_latest(ours) == generate_latest(theirs)
    assert b'active{method="GET"} 1.0' in generate_latest(ours)


def test_the_wrong_number_of_label_values_is_refused() -> None:
    _, _, _, loop = _pair()
    with pytest.raises(ValueError, match="2 label values expected, got 1"):
        loop.labels("GET")


def test_a_second_metric_of_the_same_name_is_refused_by_the_registry() -> None:
    registry = CollectorRegistry()
    LoopHistogram("dup_seconds", "One.", ["a"], buckets=BUCKETS, registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Histogram("dup_seconds", "Two.", ["a"], buckets=BUCKETS, registry=registry)


def test_with_several_workers_the_series_are_prometheus_clients_own() -> None:
    registry = CollectorRegistry()
    histogram = LoopHistogram(
        "mp_seconds", "Shared.", ["a"], buckets=BUCKETS, multiprocess=True, registry=registry
    )
    gauge = LoopGauge("mp_active", "Shared.", ["a"], multiprocess=True, registry=registry)
    assert type(histogram.labels("x")) is Histogram
    assert type(gauge.labels("x")) is Gauge
    assert b"mp_seconds_bucket" in generate_latest(registry)
