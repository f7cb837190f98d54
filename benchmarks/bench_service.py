#!/usr/bin/python3
"""bench_service.py — the Python asyncio peer of examples/http_service.cpp.

The same command line (the subset that applies to asyncio) and the same HTTP
contract (/work/briefs/service_cli.md; see examples/http_service.cpp), written
the way an asyncio user would write it: `asyncio.start_server` streams,
keep-alive, `GET /cpu?n=N` run inline on the loop, through `asyncio.to_thread`
(the loop's default executor, a ThreadPoolExecutor of --workers threads) or in
a `ProcessPoolExecutor` (--workers processes, --nice through an initializer
calling os.nice), in-flight offloads bounded by an asyncio.Semaphore.
Once listening it prints `listening on HOST:PORT` and flushes.
bench_service_driver.py drives it with wrk beside the C++ example.

    /usr/bin/python3 benchmarks/bench_service.py --port 0 --mode process --workers 1

Differences from the C++ example that asyncio imposes (documented, not hidden):
- a timed-out /cpu call answers 504, but its worker is not killed
  (ProcessPoolExecutor cannot kill one worker; the call runs to its end);
- a client that disconnects while its /cpu call runs is noticed only when the
  answer is written (asyncio streams do not report it earlier); a queued call
  whose client left is still run;
- a worker killed by a signal breaks the whole ProcessPoolExecutor
  (BrokenProcessPool): this peer answers 502 and replaces the pool.
"""

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import os
import signal
import sys
import threading
import time

MASK64 = (1 << 64) - 1
MAX_N = 10**10
MAX_HEAD = 8 * 1024


def cpu_work(n):
    """The contract's CPU function: xorshift64 from 88172645463325252, n rounds."""
    x = 88172645463325252
    for _ in range(n):
        x ^= (x << 13) & MASK64
        x ^= x >> 7
        x ^= (x << 17) & MASK64
    return x


def nice_process(n):
    os.nice(n)


def nice_thread(n):
    # Linux keeps a niceness per thread (setpriority(PRIO_PROCESS, gettid())).
    tid = threading.get_native_id()
    os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + n))


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def response(status, body, keep_alive, content_type=b"text/plain"):
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
        status,
        REASONS[status].encode(),
        content_type,
        len(body),
        b"" if keep_alive else b"Connection: close\r\n",
    )
    return head + body


class BadRequest(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def parse_head(head):
    """Returns (method, target, version, headers-dict of lower-cased names)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # latin-1 decodes every byte; kept for clarity
        raise BadRequest(400, "undecodable request head")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "malformed request line")
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "malformed header line")
        headers[name.lower()] = value.strip()
    return parts[0], parts[1], parts[2], headers


def parse_n(target):
    path, _, query = target.partition("?")
    n = None
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == "n":
            n = value
    if n is None or not n.isdigit() or not n.isascii():
        raise BadRequest(400, "/cpu needs n=<decimal integer>")
    value = int(n)
    if value > MAX_N:
        raise BadRequest(400, "n is larger than 10^10")
    return value


class Service:
    def __init__(self, args):
        self.args = args
        self.mode = args.mode
        self.workers = args.workers
        self.timeout = args.timeout_ms / 1000
        self.semaphore = asyncio.Semaphore(args.max_inflight)
        self.pool = None
        self.thread_pool = None
        self.shutting_down = False
        self.connections = set()
        self.inflight = 0
        self.requests = {}
        self.cpu_calls = 0
        self.cpu_errors = 0
        self.pool_replacements = 0

    def make_process_pool(self):
        context = multiprocessing.get_context(self.args.start)
        init, initargs = (nice_process, (self.args.nice,)) if self.args.nice else (None, ())
        return concurrent.futures.ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=init, initargs=initargs
        )

    def start_pools(self):
        if self.mode == "thread":
            init, initargs = (nice_thread, (self.args.nice,)) if self.args.nice else (None, ())
            self.thread_pool = concurrent.futures.ThreadPoolExecutor(
                self.workers, thread_name_prefix="cpu", initializer=init, initargs=initargs
            )
            asyncio.get_running_loop().set_default_executor(self.thread_pool)
        elif self.mode == "process":
            self.pool = self.make_process_pool()

    async def warm_up(self):
        """Starts every worker now, as the C++ pools do, not on the first requests."""
        loop = asyncio.get_running_loop()
        if self.mode == "process":
            await asyncio.gather(*(loop.run_in_executor(self.pool, time.sleep, 0.05) for _ in range(self.workers)))
        elif self.mode == "thread":
            await asyncio.gather(*(asyncio.to_thread(time.sleep, 0.01) for _ in range(self.workers)))

    async def cpu(self, n):
        if self.mode == "inline":
            return cpu_work(n)
        async with self.semaphore:
            self.inflight += 1
            try:
                if self.mode == "thread":
                    call = asyncio.to_thread(cpu_work, n)
                else:
                    call = asyncio.get_running_loop().run_in_executor(self.pool, cpu_work, n)
                return await asyncio.wait_for(call, self.timeout)
            finally:
                self.inflight -= 1

    async def route(self, method, target):
        path = target.partition("?")[0]
        known = path in ("/ping", "/cpu", "/metrics")
        label = path if known else "other"
        self.requests[label] = self.requests.get(label, 0) + 1
        if not known:
            return 404, b"not found\n", b"text/plain"
        if method != "GET":
            return 405, b"method not allowed\n", b"text/plain"
        if path == "/ping":
            return 200, b"pong\n", b"text/plain"
        if path == "/metrics":
            return 200, self.metrics(), b"text/plain; version=0.0.4"
        if self.shutting_down:
            return 503, b"shutting down\n", b"text/plain"
        n = parse_n(target)
        self.cpu_calls += 1
        try:
            value = await self.cpu(n)
        except asyncio.TimeoutError:
            self.cpu_errors += 1
            return 504, b"timed out\n", b"text/plain"
        except concurrent.futures.process.BrokenProcessPool:
            self.cpu_errors += 1
            broken, self.pool = self.pool, self.make_process_pool()
            self.pool_replacements += 1
            broken.shutdown(wait=False, cancel_futures=True)
            return 502, b"worker died\n", b"text/plain"
        return 200, b"%d\n" % value, b"text/plain"

    def metrics(self):
        lines = [
            "# HELP bench_service_requests_total Requests by path.",
            "# TYPE bench_service_requests_total counter",
        ]
        for path, count in sorted(self.requests.items()):
            lines.append(f'bench_service_requests_total{{path="{path}"}} {count}')
        lines += [
            "# TYPE bench_service_cpu_calls_total counter",
            f"bench_service_cpu_calls_total {self.cpu_calls}",
            "# TYPE bench_service_cpu_errors_total counter",
            f"bench_service_cpu_errors_total {self.cpu_errors}",
            "# TYPE bench_service_inflight gauge",
            f"bench_service_inflight {self.inflight}",
            "# TYPE bench_service_workers gauge",
            f'bench_service_workers{{mode="{self.mode}"}} {0 if self.mode == "inline" else self.workers}',
            "# TYPE bench_service_pool_replacements_total counter",
            f"bench_service_pool_replacements_total {self.pool_replacements}",
            "# TYPE bench_service_connections gauge",
            f"bench_service_connections {len(self.connections)}",
        ]
        return ("\n".join(lines) + "\n").encode()

    async def handle(self, reader, writer):
        task = asyncio.current_task()
        self.connections.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # the client closed (between requests or mid-head)
                except asyncio.LimitOverrunError:
                    writer.write(response(431, b"request head over 8 KiB\n", False))
                    await writer.drain()
                    return
                if len(head) > MAX_HEAD:
                    writer.write(response(431, b"request head over 8 KiB\n", False))
                    await writer.drain()
                    return
                try:
                    method, target, version, headers = parse_head(head[:-4])
                    connection = headers.get("connection", "").lower()
                    if version == "HTTP/1.0":
                        keep_alive = connection == "keep-alive"
                    else:
                        keep_alive = connection != "close"
                    if "transfer-encoding" in headers:
                        raise BadRequest(400, "request bodies are not supported")
                    length = headers.get("content-length", "0")
                    if not length.isdigit():
                        raise BadRequest(400, "malformed Content-Length")
                    if int(length) > 0:
                        raise BadRequest(413, "request bodies are not supported")
                    status, body, content_type = await self.route(method, target)
                except BadRequest as e:
                    status, body, content_type, keep_alive = e.status, (str(e) + "\n").encode(), b"text/plain", False
                if self.shutting_down:
                    keep_alive = False
                writer.write(response(status, body, keep_alive, content_type))
                await writer.drain()
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.connections.discard(task)
            writer.close()


async def serve(args):
    service = Service(args)
    service.start_pools()
    await service.warm_up()
    # limit: readuntil raises LimitOverrunError past it (answered 431).
    server = await asyncio.start_server(service.handle, args.host, args.port, limit=MAX_HEAD + 4, backlog=1024)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Graceful stop: no new connections, in-flight requests get grace_ms,
    # then the rest are cancelled and the clients closed.
    service.shutting_down = True
    server.close()
    deadline = loop.time() + args.grace_ms / 1000
    while service.inflight and loop.time() < deadline:
        await asyncio.sleep(0.01)
    for task in list(service.connections):
        task.cancel()
    await asyncio.gather(*service.connections, return_exceptions=True)
    await server.wait_closed()
    if service.pool:
        service.pool.shutdown(wait=False, cancel_futures=True)
    if service.thread_pool:
        service.thread_pool.shutdown(wait=False, cancel_futures=True)


def parse_args(argv):
    ap = argparse.ArgumentParser(description="asyncio peer of examples/http_service.cpp")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080, help="0 = ephemeral")
    ap.add_argument("--mode", choices=("inline", "thread", "process"), default="process")
    ap.add_argument("--workers", type=int, default=max(1, available_cpus() - 1))
    ap.add_argument("--nice", type=int, default=0, help="niceness of the pool's workers")
    ap.add_argument("--max-inflight", type=int, default=None, help="default 4 x workers")
    ap.add_argument("--timeout-ms", type=int, default=2000)
    ap.add_argument("--grace-ms", type=int, default=5000)
    ap.add_argument("--start", choices=("fork", "spawn", "forkserver"), default="forkserver")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be at least 1")
    if not 0 <= args.nice <= 19:
        ap.error("--nice must be 0..19")
    if args.max_inflight is None:
        args.max_inflight = 4 * args.workers
    if args.max_inflight < 1:
        ap.error("--max-inflight must be at least 1")
    if not 0 <= args.port <= 65535:
        ap.error("--port must be 0..65535")
    return args


def main():
    args = parse_args(sys.argv[1:])
    try:
        asyncio.run(serve(args))
    except OSError as e:
        print(f"bench_service.py: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
