"""The one URL masking of the project: settings output, errors and reload logs use it (log
lines in general go through `ops.logging.redact`, which masks URLs inside free text)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_USERINFO_PASSWORD = re.compile(r"(://[^:/@]*):[^@/]*@")
_QUERY_PASSWORD = re.compile(r"(?i)(password=)[^&]*")


def mask_url(url: str) -> str:
    """Hide the password of a URL (userinfo or `password=` query) so it can be printed or logged."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unparsable (e.g. a broken IPv6 host): mask by pattern
        return _QUERY_PASSWORD.sub(r"\1***", _USERINFO_PASSWORD.sub(r"\1:***@", url))
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    query = _QUERY_PASSWORD.sub(r"\1***", parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
