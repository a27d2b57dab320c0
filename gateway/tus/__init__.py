"""tus 1.0 uploads and the simple upload API (the gateway's side of uploads).

protocol.py   sans-IO tus core: headers in → typed requests / errors; headers out
metadata.py   Upload-Metadata       checksum.py   Upload-Checksum
errors.py     the error tree with each HTTP status
engine.py     UploadEngine: create, info (HEAD), append (PATCH), terminate
chunks.py     the durable state in the store and the writer (parts + tail)
leases.py     one PATCH per upload across processes (a lease on the row)
body.py       reading a request body with a read timeout and a cut-off
spool.py      holding a checksummed chunk until verified
routes.py     /files/ (tus)         simple.py  /api/v2/upload/*
status.py     the upload status projection (events → gateway_upload_status)
wiring.py     what gateway/app.py and gateway/bus.py plug in
"""
