"""The Gemini Live emulator as a container of its own (docker-compose's `emulator` service).

`voicetrace emulator` binds 127.0.0.1 and keeps its throwaway CA in a private temp directory,
which is right on a laptop and useless across containers. This entry point binds the host name
the other containers use (its certificate is issued for that name), and publishes a CA bundle —
the public roots (certifi) plus the emulator's CA — at a fixed path on a shared volume, so the
service can point `SSL_CERT_FILE` at it and still reach real HTTPS endpoints (Langfuse Cloud,
Gemini) with the same file. The bundle is removed on shutdown so nobody trusts a dead CA.

    python deploy/emulator.py --host emulator --port 9443 --bundle /emulator-certs/ca-bundle.pem
    python deploy/emulator.py --check ...   # healthcheck: bundle present and TLS handshake OK
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

import certifi

DEFAULT_BUNDLE = "/emulator-certs/ca-bundle.pem"


def write_bundle(ca_pem: Path, bundle: Path) -> None:
    """Write public roots + the emulator CA atomically (readers never see half a file)."""
    bundle.parent.mkdir(parents=True, exist_ok=True)
    tmp = bundle.with_name(bundle.name + ".tmp")
    roots = Path(certifi.where()).read_bytes()
    tmp.write_bytes(roots.rstrip(b"\n") + b"\n" + ca_pem.read_bytes())
    tmp.chmod(0o644)
    os.replace(tmp, bundle)


async def run(host: str, port: int, bundle: Path, api_key: str, scenario: str | None) -> None:
    """Serve until SIGTERM/SIGINT; the bundle exists exactly while the emulator accepts TLS."""
    # Imported here so `--check` (the healthcheck, run every few seconds) stays cheap.
    from voicetrace.emulator import Emulator, Scenario

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loaded = Scenario.load(scenario) if scenario else None
    async with Emulator(scenario=loaded, host=host, port=port, api_key=api_key) as emulator:
        try:
            write_bundle(Path(emulator.cert_path), bundle)
            print(f"Gemini Live emulator listening on {emulator.base_url}", flush=True)
            print(f"CA bundle (public roots + emulator CA): {bundle}", flush=True)
            await stop.wait()
        finally:
            # A tiny local unlink on the way out; not worth a thread.
            with contextlib.suppress(FileNotFoundError):
                bundle.unlink()  # noqa: ASYNC240


def check(host: str, port: int, bundle: Path, timeout_s: float = 3.0) -> str | None:
    """None when a client trusting only `bundle` completes a TLS handshake with `host:port`
    (certificate chain and host name verified), else the reason it did not."""
    if not bundle.is_file() or bundle.stat().st_size == 0:
        return f"no CA bundle at {bundle}"
    try:
        context = ssl.create_default_context(cafile=str(bundle))
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return None
    except (OSError, ssl.SSLError) as exc:
        return f"TLS handshake with {host}:{port} failed: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("EMULATOR_HOST", "emulator"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("EMULATOR_PORT", "9443")))
    parser.add_argument("--bundle", type=Path, default=Path(DEFAULT_BUNDLE))
    parser.add_argument("--scenario", help="JSON scenario file (what spoken turns say, …)")
    parser.add_argument("--check", action="store_true", help="healthcheck, then exit")
    args = parser.parse_args(argv)
    if args.check:
        problem = check(args.host, args.port, args.bundle)
        if problem:
            print(problem, file=sys.stderr)
            return 1
        return 0
    # The key is not a secret (the emulator is local); it must match the service's.
    api_key = os.environ.get("EMULATOR_API_KEY", "emulator-key")
    asyncio.run(run(args.host, args.port, args.bundle, api_key, args.scenario))
    return 0


if __name__ == "__main__":
    sys.exit(main())
