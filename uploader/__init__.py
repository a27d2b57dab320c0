"""The uploader: the life of an upload after its bytes arrive (DESIGN.md).

bus.py         subscribers (created, chunks, cancellations) + declared publishers
lifecycle.py   events → uploader_uploads (offset, expiry, cancellation)
finalize.py    claim → assemble → sha256 → probe → upload.completed +
               transcode.requested, or upload.rejected; exactly once per upload
assembly.py    complete the multipart upload (idempotent), hash the object
probe/         the safety-netted PyAV probe (child process, limits, no network)
sweeper.py     expired uploads: bytes deleted, upload.expired
ids.py         video and event ids derived from the upload id
runtime.py     open everything and run (``__main__`` and tests)
"""
