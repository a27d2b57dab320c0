"""The transcoder: ``transcode.requested`` (and ``stream.recorded``) → an adaptive VOD.

Worker side (the component's event loop)::

    bus.py        the broker: N job subscribers on one durable consumer, declared publishers
    worker.py     one delivery: claim, run the child, heartbeat, progress, publish once
    jobs.py       the transcoder_jobs table: lifecycle, lease, stored result and event ids
    supervise.py  the job's child process: spawn, read its messages, kill when stalled
    deletion.py   ``video.deleted``: the video's media (and its sources) out of the store

Child side (``python -m transcoder.child``, one process per job)::

    child.py      entry point: limits, die-with-parent, the message channel
    job.py        probe → ladder (stills beside it) → playlists → master, in that order
    source.py     opening untrusted input safely; probe; rotation
    ladder.py     which renditions (never upscaled)
    pipeline.py   decode once, fan frames out to the renditions
    rendition.py  one rendition's scale + libx264 + fMP4 HLS muxer, on its own thread
    thumbnails.py poster, thumbnails (keyframes only), sprite sheet + WebVTT
    playlists.py  measured BANDWIDTH, CODECS, the master playlist
    storeio.py    the async object store from blocking code (reader, uploads)

Shared: ``protocol.py`` (worker ↔ child messages), ``layout.py`` (object keys),
``errors.py`` (poison vs transient).
"""
