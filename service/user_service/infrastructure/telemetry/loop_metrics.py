"""The metrics every request moves (the HTTP server's request duration and requests in flight, the
database client's operation duration), kept as plain numbers.

prometheus-client takes a lock for every value it changes and walks a histogram's buckets in Python: an
observation costs about 9,000 instructions, a gauge's `inc` and `dec` as much, three of them on every
request. Here an observation is a bucket found by bisection and two additions (about 2,000). That is
safe because one thread writes these: the event loop's, where every request and every statement runs. A
scrape reads them from whichever thread serves it, and reading a number is atomic; the buckets and the
sum of one scrape may be one observation apart, as with prometheus-client's per-value locks.

The families are the same as prometheus-client's would be: the same names, labels, buckets (`le` spelled
as prometheus-client spells it), exemplars on the bucket of the observation that carried one, and no
`_created` series. With several workers (`PROMETHEUS_MULTIPROC_DIR`), the values must reach the files the
workers share, so the metric is prometheus-client's own there, with the same names and labels.
"""

import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Generic, Protocol, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import INF, floatToGoString


class Observer(Protocol):
    """One labelled series of a histogram."""

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None: ...


class UpDown(Protocol):
    """One labelled series of a gauge that counts what is in progress."""

    def inc(self, amount: float = 1) -> None: ...

    def dec(self, amount: float = 1) -> None: ...


class _HistogramSeries:
    __slots__ = ("bounds", "counts", "exemplars", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)  # per bucket, not cumulative: one addition an observation
        self.exemplars: list[Exemplar | None] = [None] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        index = bisect_left(self.bounds, amount)  # the first bound >= amount: the bucket `le` it falls in
        self.counts[index] += 1
        self.sum += amount
        if exemplar:
            self.exemplars[index] = Exemplar(exemplar, amount, time.time())


class _GaugeSeries:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount


_S = TypeVar("_S")


class LoopMetric(Collector, Generic[_S]):
    """What both kinds share: their series by label values, each made on first use, and registration
    (none with several workers, where prometheus-client's metric is registered instead)."""

    kind: str  # the Prometheus type

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry | None
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._series: dict[tuple[str, ...], _S] = {}
        if registry is not None:
            registry.register(self)

    def _series_of(self, values: tuple[object, ...]) -> _S:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: {len(self.labelnames)} label values expected, got {len(values)}")
        key = tuple(str(value) for value in values)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self._new_series()
        return series

    def _new_series(self) -> _S:
        raise NotImplementedError

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def _family(self) -> Metric:
        raise NotImplementedError


class LoopHistogram(LoopMetric[_HistogramSeries]):
    """A labelled histogram written by the event loop's thread only (see the module's docstring)."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        multiprocess: bool = False,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        bounds = sorted(float(bound) for bound in buckets)
        self.bounds = (*bounds, INF) if not bounds or bounds[-1] != INF else tuple(bounds)
        self._shared = (
            Histogram(name, documentation, labelnames, buckets=self.bounds, registry=registry)
            if multiprocess
            else None
        )
        super().__init__(name, documentation, labelnames, None if multiprocess else registry)

    def labels(self, *values: object) -> Observer:
        return self._shared.labels(*values) if self._shared is not None else self._series_of(values)

    def _new_series(self) -> _HistogramSeries:
        return _HistogramSeries(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        les = [floatToGoString(bound) for bound in self.bounds]  # type: ignore[no-untyped-call]
        for key, series in list(self._series.items()):
            total, buckets = 0, []
            for le, count, exemplar in zip(les, list(series.counts), list(series.exemplars), strict=True):
                total += count
                buckets.append((le, total, exemplar) if exemplar is not None else (le, total))
            family.add_metric(key, buckets, series.sum)
        return [family]


class LoopGauge(LoopMetric[_GaugeSeries]):
    """A labelled gauge of what is in progress, written by the event loop's thread only; with several
    workers, prometheus-client's gauge summed over the live ones (`livesum`)."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        multiprocess: bool = False,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._shared = (
            Gauge(name, documentation, labelnames, multiprocess_mode="livesum", registry=registry)
            if multiprocess
            else None
        )
        super().__init__(name, documentation, labelnames, None if multiprocess else registry)

    def labels(self, *values: object) -> UpDown:
        return self._shared.labels(*values) if self._shared is not None else self._series_of(values)

    def _new_series(self) -> _GaugeSeries:
        return _GaugeSeries()

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for key, series in list(self._series.items()):
            family.add_metric(key, series.value)
        return [family]
