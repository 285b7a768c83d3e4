"""A local stand-in for a lakeFS server, for lakefuse's tests and benchmarks.

It speaks the lakeFS S3 gateway protocol (path style, refs as the first key
segment, SigV4), a subset of the lakeFS REST API, and a few /_sim/ control
endpoints (fault injection, latency, request statistics). Behaviour follows
lakeFS's own source (treeverse/lakeFS, pkg/gateway and pkg/graveler); the
modules say where they differ on purpose.

Modules, from the wire inwards:
  server.py   command line entry point
  httpd.py    HTTP/1.1 server: connections, bodies, routing, faults, stats
  knobs.py    fault injection, latency and request counters
  sigv4.py    request authentication (SigV4 header/presigned, SigV2, aws-chunked)
  s3.py       the S3 gateway operations
  s3errors.py S3 error codes and the error document
  api.py      the REST API subset under /api/v1
  refs.py     lakeFS ref grammar (~N, ^N, @, $) and resolution
  store.py    durable state: journal, snapshot, object bodies, multipart parts
  xmlio.py    XML escaping, parsing and timestamp formats
"""
