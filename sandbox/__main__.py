"""Command line: run the CRM sandbox until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from sandbox.app import SandboxConfig
from sandbox.faults import FaultRule, FaultRuleError
from sandbox.server import SandboxServer, is_loopback_host
from sandbox.variants import ENVELOPES, FIELD_VARIANTS

logger = logging.getLogger("sandbox")

_EPILOG = """\
fault rules (--fault, repeatable, evaluated in order; the first non-latency match applies):
  {"mode": "latency", "latency_ms": 250}
  {"mode": "http_500", "path": "/api/customers", "method": "POST", "times": 2}
  {"mode": "error", "probability": 0.3}
  {"mode": "http_429", "retry_after": 5}    or   "retry_after": "Wed, 21 Oct 2026 07:28:00 GMT"
  {"mode": "hang", "hang_seconds": 10}      (capped by --hang-max-seconds)
  {"mode": "http_502_html"} {"mode": "truncated"} {"mode": "reset"}

control API while running:
  GET/PUT/DELETE /_sandbox/faults     GET/DELETE /_sandbox/requests     POST /_sandbox/reset
  GET/PUT /_sandbox/variants          POST /_sandbox/customers/bulk-update

environment: SANDBOX_PORT and SANDBOX_CUSTOMERS provide defaults for --port and --customers.
"""


def _fault_rule(text: str) -> dict[str, Any]:
    try:
        raw = json.loads(text)
        FaultRule.from_dict(raw, "--fault")
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from None
    except FaultRuleError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return raw


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 0..65535")
    return port


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `python -m sandbox`."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description=(
            "Run a fake of the Enterprise CRM Portal (customers API, /health, /ready) that reproduces "
            "the real CRM's wire behaviour, quirks included, with injectable faults."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default: %(default)s)")
    parser.add_argument(
        "--port",
        type=_port,
        default=os.environ.get("SANDBOX_PORT", "8090"),
        help="port to bind, 0 for any free port (default: $SANDBOX_PORT or 8090)",
    )
    parser.add_argument(
        "--customers",
        type=_non_negative_int,
        default=os.environ.get("SANDBOX_CUSTOMERS", "1200"),
        help="number of seeded customers, the first four being the CRM's own (default: $SANDBOX_CUSTOMERS or 1200)",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed for the fake data and fault RNG (default: 42)")
    parser.add_argument("--envelope", choices=ENVELOPES, default="customers", help="list envelope key")
    parser.add_argument("--field-variant", choices=FIELD_VARIANTS, default="canonical", help="customer field names")
    parser.add_argument(
        "--fault",
        dest="faults",
        type=_fault_rule,
        action="append",
        default=[],
        metavar="JSON",
        help="fault rule active from start-up (repeatable)",
    )
    parser.add_argument(
        "--hang-max-seconds", type=float, default=30.0, help="upper bound for hang faults (default: 30)"
    )
    parser.add_argument("--app-name", default="enterprise-crm-portal", help="service name reported by /health")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox until SIGINT or SIGTERM; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not is_loopback_host(args.host):
        parser.error(f"refusing to listen on {args.host!r}: the sandbox binds loopback addresses only")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = SandboxConfig(
            customers=args.customers,
            seed=args.seed,
            envelope=args.envelope,
            field_variant=args.field_variant,
            faults=args.faults,
            hang_max_seconds=args.hang_max_seconds,
            app_name=args.app_name,
        )
    except ValueError as error:
        parser.error(str(error))

    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("received %s, shutting down", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    server = SandboxServer(config, host=args.host, port=args.port)
    try:
        server.start()
    except OSError as error:
        logger.error("cannot listen on %s:%s: %s", args.host, args.port, error)
        return 1
    logger.info(
        "CRM sandbox listening on %s (customers=%d, seed=%d, faults=%d)",
        server.url,
        args.customers,
        args.seed,
        len(args.faults),
    )
    try:
        stop_requested.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
