"""cellar.config: configuring a CellarStorage the way ZODB users do.

* ZConfig (``zope.conf``, ``ZODB.config``)::

      %import cellar
      <zodb>
        <cellar>
          master 10.0.0.1:7100 10.0.0.2:7100
          cluster-name prod
          token-file /etc/zope/cellar.token
        </cellar>
      </zodb>

  The ``<cellar>`` section type lives in this package's component.xml;
  ``CellarStorageConfig`` opens it.
* zodburi: ``cellar://10.0.0.1:7100,10.0.0.2:7100/prod?token_file=...``
  (``resolve_uri``, registered as the ``cellar`` entry point of
  ``zodburi.resolvers``). Unknown query keys are refused.

Both take the same options (``OPTIONS``): the ZConfig key is the URI key
with dashes. Tokens are only read from a file, so they stay out of
configuration files and URIs.
"""
import re
from typing import Callable, Dict, List, NamedTuple, Tuple
from urllib.parse import parse_qsl, unquote

import ZODB.config

__all__ = ["OPTIONS", "DATABASE_KEYS", "CellarStorageConfig", "resolve_uri", "master_address", "master_addresses",
           "positive_seconds", "parse_bool", "byte_size"]

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")


def master_address(value: str) -> str:
    """One "host:port" address (an IPv6 host in brackets), checked."""
    m = _HOST_PORT.match(value)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise ValueError("bad master address %r: expected host:port with a port in "
                         "1-65535 (e.g. 127.0.0.1:7100, [::1]:7100)" % value)
    return value


def master_addresses(value: str) -> List[str]:
    """ZConfig datatype of ``master``: one or more "host:port" addresses
    separated by spaces or commas."""
    addresses = [a for a in re.split(r"[\s,]+", value.strip()) if a]
    if not addresses:
        raise ValueError("no master address given (expected host:port)")
    return [master_address(a) for a in addresses]


def positive_seconds(value: str) -> float:
    """ZConfig datatype of the timeouts: a number of seconds > 0."""
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError("expected a number of seconds, got %r" % value) from None
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError("expected a number of seconds > 0, got %r" % value)
    return seconds


_BYTE_SIZE = re.compile(r"^\s*([0-9]+)\s*([KMG]?)B?\s*$", re.I)


def byte_size(value: str) -> int:
    """ZConfig datatype of ``local-cache-size``: bytes >= 0, as a number
    or with a KB, MB or GB suffix (powers of 1024; 0 disables)."""
    m = _BYTE_SIZE.match(value)
    if not m:
        raise ValueError("expected a size in bytes (e.g. 20MB, 512KB, 1048576, 0), got %r"
                         % value)
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2).upper()]


def parse_bool(value: str) -> bool:
    """true/false, yes/no, on/off, 1/0 (any case)."""
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError("expected true or false, got %r" % value)


class Option(NamedTuple):
    keyword: str                    # CellarStorage's keyword argument
    parse: Callable[[str], object]  # a URI query value -> the argument


# URI key (ZConfig key: the same with dashes) -> CellarStorage keyword.
# component.xml declares the same keys (a test checks they agree).
OPTIONS: Dict[str, Option] = {
    "cluster_name": Option("cluster_name", str),
    "name": Option("name", str),
    "read_only": Option("read_only", parse_bool),
    "token_file": Option("token_file", str),
    "ca_file": Option("tls_ca_file", str),
    "cert_file": Option("tls_cert_file", str),
    "key_file": Option("tls_key_file", str),
    "server_name": Option("tls_server_name", str),
    "rpc_timeout": Option("rpc_timeout", positive_seconds),
    "connect_timeout": Option("connect_timeout", positive_seconds),
    "commit_wait_timeout": Option("commit_wait_timeout", positive_seconds),
    "max_reconnect_backoff": Option("max_reconnect_backoff", positive_seconds),
    "local_cache_size": Option("local_cache_size", byte_size),
    "pack_token_file": Option("pack_token_file", str),
    "pack_timeout": Option("pack_timeout", positive_seconds),
}

# zodburi's database keys (ZODB.DB arguments), passed through to zodburi.
DATABASE_KEYS = ("database_name",) + tuple("connection_" + p for p in (
    "pool_size", "pool_timeout", "cache_size", "cache_size_bytes", "historical_pool_size",
    "historical_cache_size", "historical_cache_size_bytes", "historical_timeout",
    "large_record_size"))


def _open(masters: List[str], options: Dict[str, object]):
    from cellar.zodb import CellarStorage
    return CellarStorage(masters, **options)


class CellarStorageConfig(ZODB.config.BaseConfig):
    """The ``<cellar>`` section: ``open()`` connects a CellarStorage."""

    def open(self):
        section = self.config
        masters = [address for line in section.masters for address in line]
        options = {}
        for key, option in OPTIONS.items():
            value = getattr(section, key)
            if value is not None:
                options[option.keyword] = value
        return _open(masters, options)


def resolve_uri(uri: str) -> Tuple[Callable[[], object], Dict[str, str]]:
    """zodburi resolver of ``cellar://MASTER[,MASTER...][/CLUSTER][?KEY=VALUE&...]``.

    Returns (storage factory, database keywords). KEY is one of OPTIONS
    or of zodburi's DATABASE_KEYS (``database_name``,
    ``connection_cache_size``, ...); anything else raises ValueError, as
    do a missing or malformed master address and a repeated key."""
    prefix = "cellar://"
    if not uri.startswith(prefix):
        raise ValueError("not a cellar URI (cellar://host:port[,host:port]/cluster?...): %r"
                         % uri)
    rest, _, query = uri[len(prefix):].partition("?")
    if "#" in query or "#" in rest:
        raise ValueError("cellar URI %r: fragments are not supported" % uri)
    netloc, _, path = rest.partition("/")
    if not netloc:
        raise ValueError("cellar URI %r names no master (cellar://host:port/cluster)" % uri)
    masters = []
    for address in unquote(netloc).split(","):
        if not address:
            raise ValueError("cellar URI %r: empty master address" % uri)
        try:
            masters.append(master_address(address))
        except ValueError as e:
            raise ValueError("cellar URI %r: %s" % (uri, e)) from None
    cluster = unquote(path.strip("/"))
    if "/" in cluster:
        raise ValueError("cellar URI %r: the path is the cluster name, one segment" % uri)
    options: Dict[str, object] = {}
    if cluster:
        options["cluster_name"] = cluster
    dbkw: Dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
    except ValueError as e:
        raise ValueError("cellar URI %r: bad query: %s" % (uri, e)) from None
    seen = set()
    for key, value in pairs:
        if key in seen:
            raise ValueError("cellar URI %r: %s given twice" % (uri, key))
        seen.add(key)
        if key in DATABASE_KEYS:
            dbkw[key] = value
        elif key in OPTIONS:
            option = OPTIONS[key]
            if not value:
                raise ValueError("cellar URI %r: %s has an empty value" % (uri, key))
            if key == "cluster_name" and cluster:
                raise ValueError("cellar URI %r: cluster_name given twice (path and query)"
                                 % uri)
            try:
                options[option.keyword] = option.parse(value)
            except ValueError as e:
                raise ValueError("cellar URI %r: %s: %s" % (uri, key, e)) from None
        else:
            raise ValueError("cellar URI %r: unknown parameter %r; known: %s" % (
                uri, key, ", ".join(sorted(OPTIONS) + list(DATABASE_KEYS))))

    def factory():
        return _open(masters, options)
    return factory, dbkw
