"""Why a transcode job fails, and whether retrying can help.

JobError                 base; carries a reason the uploader's user may see
├── PoisonInputError     the source itself is unusable (undecodable, too large, no
│                        video): retrying cannot help → transcode.failed (permanent)
│                        and the dead-letter stream at once
└── TransientJobError    the job may work next time (store down, child killed,
                         stalled): nak with backoff, dead-letter after max_deliver
"""

from __future__ import annotations

__all__ = ["JobError", "PoisonInputError", "TransientJobError"]


class JobError(Exception):
    """A transcode job did not finish."""


class PoisonInputError(JobError):
    """The source cannot be transcoded, whatever we retry."""


class TransientJobError(JobError):
    """The job failed for a reason outside the source; a retry may succeed."""
