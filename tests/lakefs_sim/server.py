#!/usr/bin/python3
"""Command line entry point of the local lakeFS simulator.

  /usr/bin/python3 tests/lakefs_sim/server.py --listen 127.0.0.1:PORT \\
      --data-dir DIR --access-key-id AK --secret-access-key SK \\
      [--latency-ms N] [--fail-rate F] [--seed N] [--region us-east-1] \\
      [--presign-expiry SEC] [--no-presign] [--no-presign-multipart] \\
      [--storage-port PORT] [--tls-cert FILE --tls-key FILE] [--verbose]

PORT 0 picks a free port. When ready the server prints exactly one line,
"listening on http://HOST:PORT" (https:// with TLS), to stdout; logs go to
stderr. The storage endpoint that presigned URLs point at (storage.py)
listens on the same host, on --storage-port (default: any free port;
GET /_sim/storage names it); --fail-rate and --latency-ms apply to it too.
--no-presign answers as a lakeFS whose storage cannot presign (no storage
endpoint); --no-presign-multipart keeps presigned single uploads but not
presigned multipart uploads. It binds loopback addresses only (--allow-non-loopback overrides).
SIGTERM and SIGINT shut it down cleanly; every acknowledged write is already
on disk, so SIGKILL loses nothing acknowledged either.
"""
import os
import sys

# Import the package from its parent directory, not this directory: module
# names here must never shadow the standard library's.
_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == _HERE:
    sys.path[0] = os.path.dirname(_HERE)
else:
    sys.path.insert(0, os.path.dirname(_HERE))

import argparse  # noqa: E402
import ipaddress  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import threading  # noqa: E402

from lakefs_sim import api, httpd, knobs, s3, storage, store  # noqa: E402


def parse_listen(value, allow_any):
    host, sep, port = value.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError("--listen must be HOST:PORT")
    host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "--listen needs a numeric address, got %r" % host) from None
    if not addr.is_loopback and not allow_any:
        raise argparse.ArgumentTypeError(
            "refusing to listen on non-loopback address %s (use --allow-non-loopback)" % host)
    try:
        port = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError("bad port %r" % port) from None
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    return host, port, family


def main(argv=None):
    p = argparse.ArgumentParser(description="Local lakeFS-compatible S3 gateway simulator.")
    p.add_argument("--listen", required=True, help="HOST:PORT (loopback; port 0 = any free)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--access-key-id", required=True)
    p.add_argument("--secret-access-key", required=True)
    p.add_argument("--latency-ms", type=int, default=0)
    p.add_argument("--fail-rate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--presign-expiry", type=int, default=900,
                   help="lifetime of presigned URLs, seconds")
    p.add_argument("--no-presign", action="store_true",
                   help="storage without presigned URLs (pre_sign_support false)")
    p.add_argument("--no-presign-multipart", action="store_true",
                   help="presigned uploads, but no presigned multipart uploads")
    p.add_argument("--storage-port", type=int, default=0)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--allow-non-loopback", action="store_true")
    p.add_argument("--sync-bodies", action="store_true",
                   help="fsync object and part bodies before answering (lakeFS's local "
                        "block adapter does not; this survives a power loss too)")
    p.add_argument("--drop-deleted-blobs", action="store_true",
                   help="benchmarks: delete the body of a deleted uncommitted object at "
                        "once when nothing else refers to it (lakeFS leaves that to its "
                        "garbage collection)")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = p.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s lakefs-sim %(levelname)s %(name)s: %(message)s")
    try:
        host, port, family = parse_listen(args.listen, args.allow_non_loopback)
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.presign_expiry < 1:
        p.error("--presign-expiry must be at least 1 second")
    ctx = None
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)

    os.makedirs(args.data_dir, exist_ok=True)
    st = store.Store(args.data_dir, sync_bodies=args.sync_bodies,
                     drop_deleted_blobs=args.drop_deleted_blobs)
    try:
        st.open()
    except RuntimeError as e:
        logging.getLogger("lakefs_sim").error("%s", e)
        return 1
    secrets = {args.access_key_id: args.secret_access_key}
    kn = knobs.Knobs(args.fail_rate, args.latency_ms, args.seed)
    sto = storage.Storage(st, args.presign_expiry, enabled=not args.no_presign,
                          multipart=not args.no_presign_multipart)
    app = httpd.App(s3.Gateway(st, secrets, args.region, clock=kn.now), api.API(st, secrets, sto), kn,
                    verbose=args.verbose)
    server = httpd.Server((host, port), app, ctx, family)
    storage_server = None
    if sto.enabled:
        storage_server = httpd.Server((host, args.storage_port),
                                      httpd.StorageApp(sto, kn, verbose=args.verbose), ctx,
                                      family)
        sh, sp = storage_server.server_address[:2]
        sto.base = "%s://%s:%d" % (storage_server.scheme,
                                   "[%s]" % sh if family == socket.AF_INET6 else sh, sp)
        threading.Thread(target=storage_server.serve_forever, kwargs={"poll_interval": 0.5},
                         name="storage", daemon=True).start()

    stopping = threading.Event()

    def stop(signum, frame):
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()
            if storage_server is not None:
                threading.Thread(target=storage_server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    bound_host, bound_port = server.server_address[:2]
    shown = "[%s]" % bound_host if family == socket.AF_INET6 else bound_host
    sys.stdout.write("listening on %s://%s:%d\n" % (server.scheme, shown, bound_port))
    sys.stdout.flush()
    logging.getLogger("lakefs_sim").info("serving %s on %s:%d", args.data_dir, shown, bound_port)
    if storage_server is not None:
        logging.getLogger("lakefs_sim").info("storage endpoint %s (presigned URLs live %d s%s)",
                                             sto.base, sto.expiry,
                                             "" if sto.multipart else "; no multipart")
    else:
        logging.getLogger("lakefs_sim").info("no presigned URLs (--no-presign)")
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        if storage_server is not None:
            storage_server.server_close()
            storage_server.wait_idle(5.0)
        server.wait_idle(5.0)        # let requests in progress answer
        st.close()
    logging.getLogger("lakefs_sim").info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
