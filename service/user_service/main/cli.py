"""`user-service`: serve the API (default), `migrate`, or run the outbox `relay` alone."""

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from user_service.main.settings import Settings, SettingsError, load_settings, mask_url


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="user-service", description="Users REST API.")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate", "relay"])
    parser.add_argument("--host", help="address to listen on (env HOST, default 127.0.0.1)")
    parser.add_argument("--port", help="port to listen on (env PORT, default 5000)")
    parser.add_argument("--workers", help="worker processes (env WORKERS, default 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    overrides = {
        k: v for k, v in {"host": args.host, "port": args.port, "workers": args.workers}.items() if v
    }
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        sys.exit(f"user-service: {exc}")
    if args.command != "migrate" and settings.telemetry_enabled:
        from user_service.infrastructure.telemetry.otel_environment import (
            OtelSettingError,
            read_otel_environment,
        )

        try:
            read_otel_environment()
        except OtelSettingError as exc:
            sys.exit(f"user-service: {exc}")
    # Worker processes read their settings from the environment, so the command line goes there too.
    os.environ.update({k.upper(): str(v) for k, v in overrides.items()})

    from user_service.infrastructure.telemetry.logging import configure_logging

    configure_logging(settings.log_level.value, settings.log_json)
    try:
        if args.command == "migrate":
            _migrate(settings)
        elif args.command == "relay":
            _relay(settings)
        else:
            _serve(settings)
    except (KeyboardInterrupt, _Terminated):
        pass
    except _Fatal as exc:
        sys.exit(f"user-service: {exc}")


class _Fatal(Exception):
    pass


class _Terminated(Exception):
    """SIGTERM after the server shut down gracefully: leave through the `finally` blocks, exit 0."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _migrate(settings: Settings) -> None:
    import structlog

    from user_service.infrastructure.db import migrations

    if settings.database_url is None:
        raise _Fatal("migrate needs DATABASE_URL (the embedded database migrates itself on start)")
    try:
        migrations.upgrade(settings.database_url)
    except (OSError, ConnectionError) as exc:
        raise _Fatal(f"cannot reach the database at {mask_url(settings.database_url)}: {exc}") from None
    structlog.get_logger("user_service.migrate").info(
        "migrations applied", database=mask_url(settings.database_url)
    )


def _relay(settings: Settings) -> None:
    if settings.relay_url is None or settings.broker_url is None:
        raise _Fatal("relay needs DATABASE_URL and BROKER_URL")
    from user_service.main.relay import run_relay

    try:
        run_relay(settings)
    except OSError as exc:  # the metrics port: taken, or an address this host does not have
        where = f"{settings.host}:{settings.relay_metrics_port}"
        raise _Fatal(f"cannot serve the relay's metrics on {where}: {exc}") from None


def _serve(settings: Settings) -> None:
    import structlog
    import uvicorn

    log = structlog.get_logger("user_service.main")
    embedded = None
    if settings.database_url is None:
        from user_service.infrastructure.db import migrations
        from user_service.infrastructure.embedded_postgres import EmbeddedPostgres, EmbeddedPostgresError

        embedded = EmbeddedPostgres(settings.data_dir)
        try:
            url = embedded.start(holder=f"serving on {settings.host}:{settings.port}")
        except EmbeddedPostgresError as exc:
            raise _Fatal(str(exc)) from None
        except Exception as exc:
            raise _Fatal(f"cannot start the embedded PostgreSQL in {settings.data_dir}: {exc}") from None
        log.info("embedded PostgreSQL started", data_dir=str(settings.data_dir))
        migrations.upgrade(url)
        os.environ["DATABASE_URL"] = url
    metrics_dir = _prepare_multiprocess_metrics() if settings.workers > 1 else None
    # uvicorn re-raises the signal it shut down for; SIGTERM's default action would skip the cleanup below.
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        uvicorn.run(
            "user_service.main.app:app_from_environment",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop="uvloop",
            # By name, so that this process (the supervisor, with several workers) never imports the
            # metrics: it would write files of its own into the workers' PROMETHEUS_MULTIPROC_DIR.
            http=HTTP_PROTOCOL,
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=round(settings.shutdown_timeout),
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        if embedded is not None:
            embedded.stop()
            log.info("embedded PostgreSQL stopped")


HTTP_PROTOCOL = "user_service.presentation.http.server:HardenedHttpToolsProtocol"
_RUN_DIR = re.compile(r"serve-(\d+)")


def _prepare_multiprocess_metrics() -> Path:
    """A folder of its own for this start's worker files, under PROMETHEUS_MULTIPROC_DIR when it is set.

    A start never reads the files of an earlier one (their totals would add to this start's, their
    gauges count twice); the folder goes when the server stops, and one left behind by a server that
    was killed is removed by the next start once its supervisor is gone.
    """
    from user_service.infrastructure.processes import alive

    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    parent = Path(given) if given else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.iterdir():
        if (match := _RUN_DIR.fullmatch(old.name)) and old.is_dir() and not alive(int(match.group(1))):
            shutil.rmtree(old, ignore_errors=True)
    own = parent / f"serve-{os.getpid()}"
    shutil.rmtree(own, ignore_errors=True)
    own.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(own)
    return own


if __name__ == "__main__":
    main()
