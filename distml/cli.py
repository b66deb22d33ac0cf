"""Command line: ``distml scheduler`` on one host, ``distml worker tcp://host:port`` on many.

Every connection is authenticated with a shared secret, read from ``--secret-file`` or the
``DISTML_SECRET`` environment variable. A scheduler started without one makes a secret and writes
it (owner-readable only) to the default secret file, where workers on the same host find it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from distml.config import (Config, default_secret_file, new_secret, read_secret_file,
                           write_secret_file)

logger = logging.getLogger("distml.cli")


def _secret(args: argparse.Namespace, create: bool) -> str:
    if args.secret_file:
        return read_secret_file(args.secret_file)
    if os.environ.get("DISTML_SECRET"):
        return os.environ["DISTML_SECRET"]
    path = default_secret_file()
    if path.exists():
        return read_secret_file(path)
    if not create:
        raise SystemExit(f"distml: no secret: pass --secret-file, set DISTML_SECRET, or copy the "
                         f"scheduler's secret file to {path}")
    secret = new_secret()
    write_secret_file(path, secret)
    logger.warning("no secret given: wrote a new one to %s (copy it to every worker host)", path)
    return secret


def _tls(args: argparse.Namespace) -> dict[str, str]:
    return {name: getattr(args, name) for name in ("tls_cert", "tls_key", "tls_ca_file")
            if getattr(args, name)}


def _add_tls_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-cert", help="this host's certificate (PEM); serves tls://")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    parser.add_argument("--tls-ca-file", help="CA that peers' certificates must chain to")


async def _serve(server_factory) -> None:
    server = await server_factory()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(server.close()))
    await server.finished()


def _scheduler(args: argparse.Namespace) -> None:
    from distml.scheduler.server import Scheduler

    config = Config.load(secret=_secret(args, create=True), host=args.host,
                         dashboard=not args.no_dashboard, dashboard_port=args.dashboard_port,
                         **_tls(args))
    address = f"{config.scheme}://{args.host}:{args.port}"

    async def make() -> Scheduler:
        scheduler = await Scheduler(address, config).start()
        print(f"distml scheduler at {scheduler.address}", flush=True)
        if await scheduler.dashboard_started() is not None:
            print(f"distml dashboard at {scheduler.dashboard.link}", flush=True)
        return scheduler

    asyncio.run(_serve(make))


def _worker(args: argparse.Namespace) -> None:
    from distml.cluster import parse_memory

    config = Config.load(secret=_secret(args, create=False), host=args.host, **_tls(args))
    nthreads = args.nthreads or os.cpu_count() or 1
    memory_limit = parse_memory(args.memory_limit)
    if args.spare:
        # what takes a new worker process most of its start-up, done before it is needed
        import numpy  # noqa: F401
        import distml.worker.server  # noqa: F401
        if not sys.stdin.readline():
            return  # the nanny is gone before it needed this spare
    if args.no_nanny:
        asyncio.run(_serve(lambda: _start_worker(args, config, nthreads, memory_limit)))
    else:
        asyncio.run(_serve(lambda: _start_nanny(args, config, nthreads, memory_limit)))


async def _start_worker(args, config, nthreads, memory_limit):
    from distml.nanny import ADDRESS_LINE
    from distml.worker.server import Worker

    worker = Worker(args.address, config, nthreads=nthreads, memory_limit=memory_limit,
                    name=args.name or "", host=args.host)
    await worker.start()
    print(f"{ADDRESS_LINE}{worker.address}", flush=True)
    return worker


class _Nanny:
    """``distml worker`` with supervision: one worker process, restarted when it dies."""

    def __init__(self, supervisor):
        self.supervisor = supervisor

    async def close(self) -> None:
        await self.supervisor.close()

    async def finished(self) -> None:
        await self.supervisor.stopped.wait()


async def _start_nanny(args, config, nthreads, memory_limit):
    from distml.nanny import ADDRESS_LINE, WorkerSupervisor

    worker_args = ["--nthreads", str(nthreads), "--memory-limit", str(memory_limit),
                   "--host", args.host]
    if args.name:
        worker_args += ["--name", args.name]
    for name, value in _tls(args).items():
        worker_args += [f"--{name.replace('_', '-')}", value]
    supervisor = WorkerSupervisor(args.address, config, worker_args, memory_limit=memory_limit)
    address = await supervisor.start()
    print(f"{ADDRESS_LINE}{address}", flush=True)
    return _Nanny(supervisor)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="distml", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default=os.environ.get("DISTML_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    sched = sub.add_parser("scheduler", help="run a scheduler")
    sched.add_argument("--host", default=os.environ.get("DISTML_HOST", "127.0.0.1"),
                       help="interface to listen on (default loopback)")
    sched.add_argument("--port", type=int, default=8786)
    sched.add_argument("--secret-file")
    sched.add_argument("--dashboard-port", type=int, default=8787,
                       help="port of the web dashboard (0: any free port; default 8787)")
    sched.add_argument("--no-dashboard", action="store_true", help="serve no web dashboard")
    _add_tls_options(sched)
    sched.set_defaults(run=_scheduler)

    work = sub.add_parser("worker", help="run a worker for the scheduler at ADDRESS")
    work.add_argument("address", help="scheduler address, e.g. tcp://10.0.0.1:8786")
    work.add_argument("--nthreads", type=int, default=0, help="threads (default: cores)")
    work.add_argument("--memory-limit", default="auto", help="e.g. 4GB; auto = machine memory")
    work.add_argument("--name")
    work.add_argument("--host", default=os.environ.get("DISTML_HOST", "127.0.0.1"),
                      help="interface to listen on for peers (default loopback)")
    work.add_argument("--secret-file")
    _add_tls_options(work)
    work.add_argument("--no-nanny", action="store_true",
                      help="run the worker in this process, without a supervisor that restarts it")
    work.add_argument("--spare", action="store_true",
                      help="(used by nannies) load everything, then wait for a line on stdin "
                           "before joining")
    work.set_defaults(run=_worker)

    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args.run(args)


if __name__ == "__main__":
    main()
