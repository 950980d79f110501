"""The one place that builds boto3 sessions and clients: the lambda backend, the S3
store, the ops that read S3 (video sources, models) and deploy all come here.

    AwsSettings (region, endpoints, credentials) ── from a Config, or from_env()
        ├─ session(settings) ─────────> boto3 Session (explicit credentials, else boto3's chain)
        ├─ client(service, settings) ─> a client with lambdaflow's defaults (below)
        ├─ shared_client(...) ────────> the same, cached per process and environment
        └─ http_route(client, session)  endpoint, proxy and CA bundle exactly as botocore
                                        resolved them, for the hand-signed invoke path

**Endpoint** of a service, first found wins:

1. the explicit setting (``Config.s3_endpoint_url`` / ``lambda_endpoint_url``, deploy's
   ``--endpoint-url``);
2. ``LAMBDAFLOW_<SERVICE>_ENDPOINT_URL`` (``LAMBDAFLOW_S3_ENDPOINT_URL``, ...);
3. botocore's own resolution: ``AWS_ENDPOINT_URL_<SERVICE>``, ``AWS_ENDPOINT_URL``, the
   profile's ``endpoint_url`` / ``services`` section, ``use_fips_endpoint`` /
   ``use_dualstack_endpoint``, and the region's partition (``amazonaws.com.cn`` in China,
   GovCloud's hosts). S3 clients on an endpoint that is not AWS's (moto, MinIO) use
   path-style addressing.

**Region**: the explicit setting (``Config.region``, ``LAMBDAFLOW_REGION``, ``--region``),
else ``AWS_REGION`` (what Lambda sets and the other SDKs read first), else botocore's
(``AWS_DEFAULT_REGION``, the profile), else us-east-1.

**Credentials**: the explicit triple (``Config.aws_access_key_id`` & co., which
``local_aws().config`` fills in), else boto3's chain (environment, ``AWS_PROFILE``, SSO,
container and instance roles), refreshed as boto3 refreshes them. They are never part
of a ``repr``, a log line, a stored object or a task message.

**Transport**: botocore's standard retry mode with ``attempts`` total attempts (default
1: callers such as ``S3Store`` own their retry budget and make it visible), connection
pools of ``pool`` connections, connect / read timeouts, TCP keep-alive.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lambdaflow.errors import ConfigError

if TYPE_CHECKING:
    from lambdaflow.config import Config

DEFAULT_REGION = "us-east-1"
#: Host suffixes of AWS's own endpoints (S3 uses virtual-hosted addressing there).
AWS_HOST_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


def endpoint_env_var(service: str) -> str:
    """``LAMBDAFLOW_<SERVICE>_ENDPOINT_URL`` for ``service`` (``s3``, ``lambda``, ...)."""
    return f"LAMBDAFLOW_{service.upper().replace('-', '_')}_ENDPOINT_URL"


@dataclass(frozen=True)
class AwsSettings:
    """What decides which AWS a client talks to, and as whom."""

    region: str | None = None
    #: (service, endpoint URL) pairs set explicitly; others follow the endpoint rule
    endpoints: tuple[tuple[str, str], ...] = ()
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if bool(self.access_key_id) != bool(self.secret_access_key):
            raise ConfigError(
                "AWS credentials are incomplete: give both aws_access_key_id and "
                "aws_secret_access_key (LAMBDAFLOW_AWS_ACCESS_KEY_ID / "
                "LAMBDAFLOW_AWS_SECRET_ACCESS_KEY), or neither to use boto3's own chain"
            )

    @classmethod
    def from_config(cls, cfg: Config) -> AwsSettings:
        endpoints = {"lambda": cfg.lambda_endpoint_url, "s3": cfg.s3_endpoint_url}
        return cls(
            region=cfg.region or None,
            endpoints=tuple((k, v) for k, v in endpoints.items() if v),
            access_key_id=cfg.aws_access_key_id or None,
            secret_access_key=cfg.aws_secret_access_key or None,
            session_token=cfg.aws_session_token or None,
        )

    @classmethod
    def from_env(cls) -> AwsSettings:
        """The settings ``LAMBDAFLOW_*`` variables give (``lambdaflow.config.resolve``)."""
        from lambdaflow.config import resolve

        return cls.from_config(resolve())

    def endpoint(self, service: str) -> str | None:
        """The explicit endpoint, else ``LAMBDAFLOW_<SERVICE>_ENDPOINT_URL``, else None
        (botocore then resolves it)."""
        for name, url in self.endpoints:
            if name == service:
                return url
        return os.environ.get(endpoint_env_var(service)) or None

    def with_endpoint(self, service: str, url: str | None) -> AwsSettings:
        """A copy with ``service``'s endpoint set to ``url`` (None: unchanged)."""
        if not url:
            return self
        rest = tuple((k, v) for k, v in self.endpoints if k != service)
        return _replace(self, endpoints=rest + ((service, url),))

    def with_region(self, region: str | None) -> AwsSettings:
        return _replace(self, region=region) if region else self


def _replace(settings: AwsSettings, **changes: Any) -> AwsSettings:
    import dataclasses

    return dataclasses.replace(settings, **changes)


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise ConfigError(
            "AWS access needs boto3: pip install 'lambdaflow[aws]'"
        ) from exc
    return boto3


def session(settings: AwsSettings | None = None) -> Any:
    """A new boto3 Session for ``settings`` (default: from the environment)."""
    settings = settings if settings is not None else AwsSettings.from_env()
    boto3 = _boto3()
    kwargs: dict[str, Any] = {}
    if settings.access_key_id:
        kwargs.update(
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            aws_session_token=settings.session_token,
        )
    kwargs["region_name"] = settings.region or os.environ.get("AWS_REGION") or None
    return boto3.session.Session(**kwargs)


def region(settings: AwsSettings | None = None, sess: Any = None) -> str:
    """The region ``settings`` resolve to (explicit, AWS_REGION, botocore's, us-east-1)."""
    settings = settings if settings is not None else AwsSettings.from_env()
    if settings.region:
        return settings.region
    if os.environ.get("AWS_REGION"):
        return os.environ["AWS_REGION"]
    sess = sess if sess is not None else session(settings)
    return sess.region_name or DEFAULT_REGION


def is_aws_endpoint(url: str | None) -> bool:
    host = (urlsplit(url).hostname or "") if url else ""
    return host.endswith(AWS_HOST_SUFFIXES)


def client(
    service: str,
    settings: AwsSettings | None = None,
    *,
    sess: Any = None,
    attempts: int = 1,
    pool: int = 10,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
) -> Any:
    """A boto3 client for ``service``: endpoint, region and credentials by the rules
    above; ``attempts`` total attempts in botocore's standard retry mode; ``pool`` kept-
    alive connections; the given timeouts; TCP keep-alive on."""
    from botocore.config import Config as BotoConfig

    settings = settings if settings is not None else AwsSettings.from_env()
    sess = sess if sess is not None else session(settings)
    endpoint = settings.endpoint(service)

    def build(path_style: bool) -> Any:
        config = BotoConfig(
            retries={"mode": "standard", "total_max_attempts": max(1, int(attempts))},
            max_pool_connections=max(1, int(pool)),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            tcp_keepalive=True,
            s3={"addressing_style": "path"} if path_style else None,
        )
        return sess.client(
            service,
            region_name=region(settings, sess),
            endpoint_url=endpoint,
            config=config,
        )

    made = build(service == "s3" and endpoint is not None and not is_aws_endpoint(endpoint))
    if service == "s3" and endpoint is None and not is_aws_endpoint(made.meta.endpoint_url):
        made = build(True)  # botocore resolved a custom endpoint (AWS_ENDPOINT_URL_S3)
    return made


_SHARED: dict[tuple, Any] = {}
_SHARED_LOCK = threading.Lock()


def shared_client(service: str, settings: AwsSettings | None = None, **options: Any) -> Any:
    """``client(service, settings, **options)``, built once per process for the same
    arguments and the same ``AWS_*`` / ``LAMBDAFLOW_*`` environment (boto3 clients are
    thread-safe; their connection pools are worth keeping)."""
    settings = settings if settings is not None else AwsSettings.from_env()
    env = tuple(
        sorted(
            (k, v) for k, v in os.environ.items() if k.startswith(("AWS_", "LAMBDAFLOW_"))
        )
    )
    key = (service, settings, tuple(sorted(options.items())), env)
    with _SHARED_LOCK:
        made = _SHARED.get(key)
        if made is None:
            made = _SHARED[key] = client(service, settings, **options)
        return made


def clear_shared_clients() -> None:
    """Forget the cached clients (tests that change credentials or endpoints)."""
    with _SHARED_LOCK:
        _SHARED.clear()


# -------------------------------------------------------------- the invoke transport


@dataclass(frozen=True)
class HttpRoute:
    """How to reach a service endpoint, as botocore would: the endpoint URL, the proxy
    for it (``Config(proxies=...)``, else ``HTTPS_PROXY`` / ``HTTP_PROXY`` with
    ``NO_PROXY`` honoured), the proxy's headers (Basic auth from its URL), and how to
    verify TLS (a CA bundle path from ``AWS_CA_BUNDLE`` / the profile's ``ca_bundle`` /
    ``REQUESTS_CA_BUNDLE``, else True for the system store)."""

    url: str
    proxy_url: str | None = None
    proxy_headers: dict[str, str] = field(default_factory=dict, repr=False)
    verify: bool | str = True


def http_route(made: Any, sess: Any) -> HttpRoute:
    """The :class:`HttpRoute` of client ``made`` created from boto3 session ``sess``."""
    import botocore.session
    from botocore.httpsession import ProxyConfiguration
    from botocore.utils import get_environ_proxies

    url = made.meta.endpoint_url
    proxies = made.meta.config.proxies
    if proxies is None:
        proxies = get_environ_proxies(url)
    proxy_config = ProxyConfiguration(proxies=proxies)
    proxy = proxy_config.proxy_url_for(url)
    headers = proxy_config.proxy_headers_for(proxy) if proxy else {}
    verify: bool | str = True
    # The same lookup botocore's create_client makes (AWS_CA_BUNDLE, the profile's
    # ca_bundle), then its endpoint's fallback to REQUESTS_CA_BUNDLE.
    profile = sess.profile_name if sess.profile_name != "default" else None
    bundle = botocore.session.Session(profile=profile).get_config_variable("ca_bundle")
    if bundle:
        verify = bundle
    elif os.environ.get("REQUESTS_CA_BUNDLE"):
        verify = os.environ["REQUESTS_CA_BUNDLE"]
    return HttpRoute(url=url, proxy_url=proxy, proxy_headers=headers, verify=verify)


__all__ = [
    "AwsSettings",
    "HttpRoute",
    "DEFAULT_REGION",
    "client",
    "clear_shared_clients",
    "endpoint_env_var",
    "http_route",
    "is_aws_endpoint",
    "region",
    "session",
    "shared_client",
]
