"""The standard OTEL_* variables the service honours, read and checked before anything is started.

The SDK itself warns about a bad value and carries on with a default (a misspelled exporter protocol
silently sends nothing); here a bad value is an error naming the variable, so the start fails with one
line. What the SDK reads on its own afterwards (endpoints, headers) has been checked here first.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from urllib.parse import unquote, urlsplit

EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("http/protobuf", "grpc")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_BSP_DEFAULTS = {  # the SDK's own defaults (milliseconds, spans)
    "OTEL_BSP_SCHEDULE_DELAY": 5000,
    "OTEL_BSP_MAX_QUEUE_SIZE": 2048,
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": 512,
    "OTEL_BSP_EXPORT_TIMEOUT": 30000,
}
DEFAULT_EXPORT_TIMEOUT = 10.0  # seconds, the SDK's default for OTEL_EXPORTER_OTLP_TIMEOUT


class OtelSettingError(Exception):
    """One OTEL_* variable has a value the SDK cannot use; the message is one line naming it."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"invalid setting {variable}: {message}")
        self.variable = variable


@dataclass(frozen=True)
class OtelEnvironment:
    disabled: bool = False
    exporters: tuple[str, ...] = ()  # empty: nothing leaves the process
    protocol: str = "http/protobuf"
    export_timeout: float = DEFAULT_EXPORT_TIMEOUT  # seconds, per export request
    schedule_delay_ms: int = 5000
    max_queue_size: int = 2048
    max_export_batch_size: int = 512
    bsp_export_timeout_ms: int = 30000
    resource: dict[str, str] = field(default_factory=dict)  # OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
    sampler: str | None = None  # OTEL_TRACES_SAMPLER: plain SDK sampling instead of the outcome policy


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value.strip() if value is not None and value.strip() else None


def _boolean(env: Mapping[str, str], name: str) -> bool:
    value = (_get(env, name) or "false").lower()
    if value not in ("true", "false"):
        raise OtelSettingError(name, f"{value!r} is neither true nor false")
    return value == "true"


def _pairs(env: Mapping[str, str], name: str) -> dict[str, str]:
    """`key=value,key=value`, URL-encoded values (the OTLP exporter specification's form)."""
    pairs: dict[str, str] = {}
    for item in (_get(env, name) or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OtelSettingError(name, f"{item.strip()!r} is not key=value")
        pairs[unquote(key.strip())] = unquote(value.strip())
    return pairs


def _endpoint(env: Mapping[str, str], name: str) -> None:
    value = _get(env, name)
    if value is None:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OtelSettingError(name, f"{value!r} is not an http:// or https:// URL with a host")
    try:
        _ = parts.port
    except ValueError:
        raise OtelSettingError(name, f"{value!r} has an invalid port") from None


def _seconds(env: Mapping[str, str], name: str) -> float | None:
    value = _get(env, name)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise OtelSettingError(name, f"{value!r} is not a number of seconds") from None
    if not 0 < seconds <= 600:
        raise OtelSettingError(name, f"{value!r} must be more than 0 and at most 600 seconds")
    return seconds


def _count(env: Mapping[str, str], name: str, minimum: int) -> int:
    value = _get(env, name)
    if value is None:
        return _BSP_DEFAULTS[name]
    try:
        number = int(value)
    except ValueError:
        raise OtelSettingError(name, f"{value!r} is not an integer") from None
    if number < minimum:
        raise OtelSettingError(name, f"{value!r} must be at least {minimum}")
    return number


def _one_of(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = (_get(env, name) or default).lower()
    if value not in allowed:
        raise OtelSettingError(name, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _propagators(env: Mapping[str, str]) -> None:
    value = _get(env, "OTEL_PROPAGATORS")
    if value is None:
        return
    # `opentelemetry.propagate` loads these at import and raises on an unknown one: checked before.
    known = {ep.name for ep in entry_points(group="opentelemetry_propagator")} | {"none"}
    for name in (part.strip() for part in value.split(",")):
        if name and name not in known:
            raise OtelSettingError("OTEL_PROPAGATORS", f"{name!r} is not one of {', '.join(sorted(known))}")


def _sampler(env: Mapping[str, str]) -> str | None:
    sampler = _get(env, "OTEL_TRACES_SAMPLER")
    if sampler is None:
        return None
    sampler = _one_of(env, "OTEL_TRACES_SAMPLER", SAMPLERS, sampler)
    if sampler.endswith("traceidratio"):
        arg = _get(env, "OTEL_TRACES_SAMPLER_ARG") or "1.0"
        try:
            ratio = float(arg)
        except ValueError:
            raise OtelSettingError("OTEL_TRACES_SAMPLER_ARG", f"{arg!r} is not a number") from None
        if not 0 <= ratio <= 1:
            raise OtelSettingError("OTEL_TRACES_SAMPLER_ARG", f"{arg!r} is not between 0 and 1")
    return sampler


def read_otel_environment(env: Mapping[str, str] | None = None) -> OtelEnvironment:
    """The OTEL_* variables of `env` (the process's environment), checked; OtelSettingError if one is bad."""
    env = os.environ if env is None else env
    disabled = _boolean(env, "OTEL_SDK_DISABLED")
    endpoint_set = False
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        _endpoint(env, name)
        endpoint_set = endpoint_set or _get(env, name) is not None
    for name in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        _pairs(env, name)
    protocol = _one_of(
        env,
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
        if _get(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        else "OTEL_EXPORTER_OTLP_PROTOCOL",
        PROTOCOLS,
        _get(env, "OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf",
    )
    timeout = _seconds(env, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or _seconds(
        env, "OTEL_EXPORTER_OTLP_TIMEOUT"
    )
    exporters_value = _get(env, "OTEL_TRACES_EXPORTER")
    if exporters_value is None:
        # Unlike the SDK's default (otlp to localhost): without an endpoint nothing leaves the process.
        exporters: tuple[str, ...] = ("otlp",) if endpoint_set else ()
    else:
        names = [part.strip().lower() for part in exporters_value.split(",") if part.strip()]
        for name in names:
            if name not in EXPORTERS:
                raise OtelSettingError(
                    "OTEL_TRACES_EXPORTER", f"{name!r} is not one of {', '.join(EXPORTERS)}"
                )
        exporters = () if "none" in names else tuple(dict.fromkeys(names))
    queue = _count(env, "OTEL_BSP_MAX_QUEUE_SIZE", 1)
    batch = _count(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1)
    if batch > queue:
        raise OtelSettingError(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", f"{batch} exceeds OTEL_BSP_MAX_QUEUE_SIZE ({queue})"
        )
    resource = _pairs(env, "OTEL_RESOURCE_ATTRIBUTES")
    if service_name := _get(env, "OTEL_SERVICE_NAME"):
        resource["service.name"] = service_name  # the specification: it wins over the attributes
    _propagators(env)
    return OtelEnvironment(
        disabled=disabled,
        exporters=exporters,
        protocol=protocol,
        export_timeout=timeout or DEFAULT_EXPORT_TIMEOUT,
        schedule_delay_ms=_count(env, "OTEL_BSP_SCHEDULE_DELAY", 0),
        max_queue_size=queue,
        max_export_batch_size=batch,
        bsp_export_timeout_ms=_count(env, "OTEL_BSP_EXPORT_TIMEOUT", 0),
        resource=resource,
        sampler=_sampler(env),
    )
