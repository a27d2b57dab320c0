"""The safety-netted media probe: is this upload a video we can take, and what is it?

    sniff.py     container from magic numbers (a whitelist), never FFmpeg's guess
    boxes.py     declared picture sizes of MP4/MOV, read before FFmpeg opens the file
    child.py     the child process: rlimits, no network, forced demuxer, one decode
    ipc.py       the pipe protocol the child reads the upload through
    runner.py    the parent: spawns the child, serves its reads, enforces the deadline
    verdict.py   Accepted / Rejected (code + the reason users see)

This package's ``__init__`` stays empty: the child imports it before its limits apply.
"""
