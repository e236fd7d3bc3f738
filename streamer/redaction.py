"""The one masking of secrets in URLs: settings output, errors and every log line use it
(`mask_url` for one URL, `redact` for the URLs inside a free text)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_USERINFO_PASSWORD = re.compile(r"(://[^:/@]*):[^@/]*@")
_QUERY_PASSWORD = re.compile(r"(?i)(password=)[^&]*")
# A URL inside a text: a scheme, then everything up to white space or the next URL's scheme.
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://(?:(?![a-zA-Z][a-zA-Z0-9+.-]*://)\S)*")
_TRAILING = ".,:;!?)]}'\""  # ends a sentence or a quote, not the URL


def mask_url(url: str) -> str:
    """Hide the password of a URL (userinfo or `password=` query) so it can be printed or logged."""
    try:
        parts = urlsplit(url)
    except ValueError:  # unparsable (e.g. a broken IPv6 host): mask by pattern
        return _QUERY_PASSWORD.sub(rf"\1{MASK}", _USERINFO_PASSWORD.sub(rf"\1:{MASK}@", url))
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostport}"
    query = _QUERY_PASSWORD.sub(rf"\1{MASK}", parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(text: str) -> str:
    """Mask the password of every URL in a text, so a log line never carries one."""
    return _URL_IN_TEXT.sub(_mask_in_text, text)


def _mask_in_text(match: re.Match[str]) -> str:
    """mask_url of one URL found in a text; punctuation after it stays the text's, unless a
    password ends the URL (then the punctuation may be part of it and is masked too)."""
    found = match.group()
    url = found.rstrip(_TRAILING)
    masked = mask_url(url)
    return mask_url(found) if masked.endswith(MASK) else masked + found[len(url):]
