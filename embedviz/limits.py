"""Caps on how much one view or one upload may ask for, configured in one place.

Every cap is read from an environment variable (documented in the README's
*Configuration* table) with a default that keeps a shared server responsive:

=============================  =======  ==============================================
variable                       default  caps
=============================  =======  ==============================================
``EMBEDVIZ_MAX_SAMPLES``       1000     clips per word in a view or ``extract``
``EMBEDVIZ_MAX_CLIPS``         25000    clips in one view (words x clips per word)
``EMBEDVIZ_MAX_UPLOAD_SECONDS`` 30      duration of an uploaded clip
``EMBEDVIZ_MAX_UPLOAD_MB``     20       size of an uploaded file
=============================  =======  ==============================================

A value that is not a positive whole number is ignored (the default applies) so a typo
in the environment cannot switch a cap off. Pure library code.
"""

from __future__ import annotations

import logging
import os

from embedviz.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULTS: dict[str, int] = {
    "EMBEDVIZ_MAX_SAMPLES": 1000,
    "EMBEDVIZ_MAX_CLIPS": 25000,
    "EMBEDVIZ_MAX_UPLOAD_SECONDS": 30,
    "EMBEDVIZ_MAX_UPLOAD_MB": 20,
}


def _cap(name: str) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return DEFAULTS[name]
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        log.warning("%s=%r is not a positive whole number; using %d", name, raw, DEFAULTS[name])
        return DEFAULTS[name]
    return value


def max_samples() -> int:
    """Most clips per word (``$EMBEDVIZ_MAX_SAMPLES``)."""
    return _cap("EMBEDVIZ_MAX_SAMPLES")


def max_clips() -> int:
    """Most clips in one view, all words together (``$EMBEDVIZ_MAX_CLIPS``)."""
    return _cap("EMBEDVIZ_MAX_CLIPS")


def max_upload_seconds() -> int:
    """Longest uploaded clip in seconds (``$EMBEDVIZ_MAX_UPLOAD_SECONDS``)."""
    return _cap("EMBEDVIZ_MAX_UPLOAD_SECONDS")


def max_upload_bytes() -> int:
    """Largest uploaded file in bytes (``$EMBEDVIZ_MAX_UPLOAD_MB`` megabytes)."""
    return _cap("EMBEDVIZ_MAX_UPLOAD_MB") * 1024 * 1024


def clip_budget(n_words: int, samples: int) -> tuple[int, str]:
    """``(clips per word allowed, message)`` for ``n_words`` words at ``samples`` each.

    The message is empty when nothing was capped; otherwise it names the cap and the
    variable that raises it.
    """
    per_word_cap = max_samples()
    total_cap = max_clips()
    allowed = min(samples, per_word_cap)
    if n_words > 0 and allowed * n_words > total_cap:
        allowed = max(1, total_cap // n_words)
    if allowed == samples:
        return samples, ""
    return allowed, (
        f"{samples} clips per word for {n_words} word(s) is over the cap "
        f"({per_word_cap} per word, EMBEDVIZ_MAX_SAMPLES; {total_cap} in all, EMBEDVIZ_MAX_CLIPS); "
        f"using {allowed} per word."
    )


def check_upload(n_bytes: int, seconds: float | None = None) -> None:
    """Raise :class:`ConfigError` if an upload is too large or too long (message names the cap)."""
    cap = max_upload_bytes()
    if n_bytes > cap:
        raise ConfigError(
            f"the uploaded file is {n_bytes / 1e6:.1f} MB; the limit is {cap // (1024 * 1024)} MB "
            "(EMBEDVIZ_MAX_UPLOAD_MB)"
        )
    if seconds is not None and seconds > max_upload_seconds():
        raise ConfigError(
            f"the uploaded clip lasts {seconds:.1f} s; the limit is {max_upload_seconds()} s "
            "(EMBEDVIZ_MAX_UPLOAD_SECONDS)"
        )


__all__ = ["DEFAULTS", "check_upload", "clip_budget", "max_clips", "max_samples", "max_upload_bytes", "max_upload_seconds"]
