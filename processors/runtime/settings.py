"""Runtime settings, read once from ``METERLY_*`` environment variables.

Settings fail fast: a malformed value stops the process at start with the variable's name,
instead of surfacing later as a connection error.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from storage.cassandra import CassandraSecurity


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METERLY_", extra="ignore")

    #: Where downloads, data directories, logs and pid files live (git-ignored).
    home: Path = Field(default_factory=lambda: Path.cwd() / ".meterly")
    #: Downloaded jars; defaults to ``<home>/cache``. Share it between checkouts to download once.
    cache: Path | None = None
    #: Existing Kafka cluster ("host:port,host:port"). Unset: Meterly provisions one.
    kafka_bootstrap: str | None = None
    #: Existing Cassandra contact points ("host[:port],..."). Unset: Meterly provisions one.
    cassandra_hosts: str | None = None
    #: How clients reach Kafka (processors.kafka.config): PLAINTEXT, SSL, SASL_PLAINTEXT or
    #: SASL_SSL; with SASL, PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = \
        "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512",
                                  "OAUTHBEARER"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    #: OAUTHBEARER: the OAuth 2 client-credentials token endpoint and client.
    kafka_oauth_token_url: str | None = None
    kafka_oauth_client_id: str | None = None
    kafka_oauth_client_secret: str | None = None
    kafka_oauth_scope: str | None = None
    #: TLS: the CA bundle the brokers' certificates chain to (unset: the system's), and a
    #: client certificate and key (PEM) for brokers that ask for one.
    kafka_ssl_ca_file: Path | None = None
    kafka_ssl_cert_file: Path | None = None
    kafka_ssl_key_file: Path | None = None
    kafka_ssl_key_password: str | None = None
    #: Cassandra credentials (PasswordAuthenticator) and TLS, as for Kafka.
    cassandra_username: str | None = None
    cassandra_password: str | None = None
    cassandra_ssl: bool = False
    cassandra_ssl_ca_file: Path | None = None
    cassandra_ssl_cert_file: Path | None = None
    cassandra_ssl_key_file: Path | None = None
    cassandra_keyspace: str = "meterly"
    #: Replication strategy options for the keyspace, as CQL map text.
    cassandra_replication: str = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    #: Prepended to every topic name, so several deployments (or test runs) share a cluster.
    topic_prefix: str = "meterly."
    kafka_replication_factor: int = Field(default=1, ge=1)
    #: The operator's bearer token. Unset: ``meterly run`` generates one in <home>/admin-token.
    admin_token: str | None = Field(default=None, min_length=16)
    #: Keys by purpose, "id:base64url-of-32-bytes,..." newest first (processors.runtime.
    #: keyring): download-link signing, console sessions, and the key-encryption keys that
    #: seal webhook signing secrets. Unset: generated once in <home>/keys.json (mode 0600).
    #: Set them (the same on every host) when Meterly runs on more than one machine.
    link_keys: str | None = None
    session_keys: str | None = None
    secret_keys: str | None = None
    #: HMAC keys attesting ingest records the validator verified, so a replayed dead letter
    #: keeps its tenant without keeping its API key (processors.usage.core.ingest_credentials).
    record_keys: str | None = None
    #: OpenID Connect sign-in to the console (gateway.oidc): the issuer URL, this client's id
    #: and secret at the provider. Unset: the console takes operator tokens only.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_scopes: str = "openid email profile"
    #: Default token-bucket refill per second for each API key; a tenant may override it.
    rate_limit_per_second: int = Field(default=1000, ge=1)
    #: The largest request body the gateway reads, on any route (413 beyond it).
    max_body_bytes: int = Field(default=2**20, ge=1024)
    #: A request's line and headers must arrive within this many seconds of its first byte
    #: (or of the connection's opening), and its body within this many more (gateway.server).
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    #: Connections and requests one gateway process serves at once; past it, 503.
    max_connections: int = Field(default=2048, ge=16)
    #: Failed authentications a client address may make a minute (a burst of as many);
    #: half as many per API key prefix. Beyond them: 429 with Retry-After.
    auth_failures_per_minute: int = Field(default=20, ge=1)
    #: Idempotent answers a gateway process keeps for replay: bytes per tenant, and in all.
    idempotency_bytes_per_tenant: int = Field(default=4 * 2**20, ge=64 * 1024)
    idempotency_bytes: int = Field(default=64 * 2**20, ge=64 * 1024)
    #: How long after a period ends it still takes usage (and closes), in seconds.
    grace_seconds: int = Field(default=3600, ge=0)
    #: Refuse events without ``time`` (their identity is remembered for 35 days from their
    #: receipt only; see ``schemas.cloudevents.to_usage_event``).
    require_event_time: bool = False
    port: int = Field(default=3000, ge=1, le=65535)
    host: str = "127.0.0.1"
    #: The gateway's address as clients reach it (download links); default http://host:port.
    public_url: str | None = None
    #: Gateway processes sharing the port; each enforces its share of every rate limit.
    gateway_processes: int = Field(default=1, ge=1)
    #: Counting workers ``meterly run`` starts.
    counter_workers: int = Field(default=1, ge=1)
    #: This worker's stable id: its transactional id and static group membership.
    worker_id: str = Field(default="1", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    #: Level of Meterly's own logs; DEBUG adds a line per request and per batch with the
    #: correlation ids it carries (read by processors/runtime/logs.py before settings are loaded).
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    #: Serve a worker's Prometheus metrics on this port (unset: not served).
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    #: How often the counter forgets identities past their expiry, in seconds.
    dedupe_sweep_seconds: float = Field(default=3600.0, gt=0)

    # Billing
    #: Invoice numbers read <prefix>-<year>-<sequence>, gapless per prefix and year.
    invoice_prefix: str = Field(default="MTR", pattern=r"^[A-Z0-9]{1,10}$")
    #: The seller block of every invoice.
    issuer_name: str = "Meterly"
    #: Address lines of the seller, separated by "|".
    issuer_address: str = ""
    issuer_email: str | None = None
    issuer_tax_id: str | None = None
    #: Days from issue to due date, unless the tenant sets its own terms.
    payment_terms_days: int = Field(default=30, ge=0, le=365)
    #: Invoice renderers ``meterly run`` starts (PDF rendering is CPU-bound: about one per
    #: core; two close 10,000 tenants within 30 s on two cores, docs/benchmarks.md).
    renderer_workers: int = Field(default=2, ge=1)
    #: How often the billing agent looks for periods to close, in seconds.
    billing_tick_seconds: float = Field(default=30.0, gt=0)
    #: How long after a period's closes were enqueued (and how often after) the billing
    #: agent looks for tenants of the period still without an invoice or a PDF, in seconds.
    billing_reconcile_seconds: float = Field(default=300.0, gt=0)
    #: How long after end plus grace the scheduled close starts: the gateways' Kafka
    #: delivery timeout (10 s) plus clock skew between machines.
    close_settle_seconds: float = Field(default=15.0, ge=0)
    #: A tenant whose producers have open sequence gaps at close: ``list`` invoices it with
    #: the gaps listed on the invoice; ``hold`` leaves it uninvoiced until they close (the
    #: reconciliation closes it again).
    close_with_gaps: Literal["list", "hold"] = "list"
    #: Read "now" from this file (an RFC 3339 time) instead of the system clock: tests and
    #: demos move billing time forward by writing it. Never set in production.
    clock_file: Path | None = None

    # Webhooks
    #: Seconds between attempts after each failure (published schedule; at most 7 steps).
    webhook_retry_schedule: str = "5,30,120,600,3600,21600,86400"
    webhook_connect_timeout: float = Field(default=5.0, gt=0)
    webhook_read_timeout: float = Field(default=10.0, gt=0)
    #: One attempt, connect to the last byte read, never takes longer than this: a receiver
    #: that drips its answer a byte at a time cannot hold a delivery slot.
    webhook_attempt_timeout: float = Field(default=15.0, gt=0)
    #: Networks webhook URLs may resolve to although they are not public ("127.0.0.0/8").
    webhook_allow_networks: str = ""
    #: An endpoint failing without a success for this long is disabled.
    webhook_disable_after_seconds: int = Field(default=3 * 86400, ge=1)
    #: After 5 failures in a row an endpoint gets no attempts for this long (doubling, to
    #: 10 minutes at most, while trials keep failing).
    webhook_breaker_cooldown: float = Field(default=30.0, gt=0)
    #: Deliveries in flight per dispatcher process.
    webhook_concurrency: int = Field(default=1024, ge=1)
    #: Shares of a plan's included quantity that send usage.threshold_reached, in percent.
    usage_thresholds: str = "80,100"
    #: Dispatcher processes ``meterly run`` starts.
    webhook_workers: int = Field(default=1, ge=1)

    # Object store (invoice PDFs)
    #: Where invoice PDFs are kept: unset, the local directory ``<home>/objects``;
    #: ``s3://bucket[/prefix]`` for S3 or an S3-compatible store (S3Proxy, MinIO).
    object_store_url: str | None = Field(
        default=None, pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"
    )
    #: Endpoint of an S3-compatible store ("http://127.0.0.1:8081"). Unset: AWS S3.
    s3_endpoint_url: str | None = None
    #: S3 access key id. Unset (with the secret key): boto3's own credential chain.
    s3_access_key: str | None = None
    #: S3 secret access key, set together with the access key.
    s3_secret_key: str | None = None
    #: Region of the bucket; requests are signed for it.
    s3_region: str = "us-east-1"

    @field_validator("topic_prefix")
    @classmethod
    def _legal_topic_prefix(cls, value: str) -> str:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if not set(value) <= allowed:
            raise ValueError("topic prefix may hold only letters, digits, '.', '_' and '-'")
        return value

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", "kafka_sasl_username",
                     "kafka_sasl_password", "kafka_oauth_token_url", "kafka_oauth_client_id",
                     "kafka_oauth_client_secret", "kafka_oauth_scope", "kafka_ssl_ca_file",
                     "kafka_ssl_cert_file", "kafka_ssl_key_file", "kafka_ssl_key_password",
                     "cassandra_username", "cassandra_password", "cassandra_ssl_ca_file",
                     "cassandra_ssl_cert_file", "cassandra_ssl_key_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object, info: ValidationInfo) -> object:
        # An empty value counts as unset (a compose file passes ``${VAR:-}`` through).
        if value == "":
            return "PLAINTEXT" if info.field_name == "kafka_security_protocol" else None
        return value

    @field_validator("cassandra_keyspace")
    @classmethod
    def _legal_keyspace(cls, value: str) -> str:
        if not value.replace("_", "a").isalnum() or not value[0].isalpha() or len(value) > 48:
            raise ValueError("keyspace must start with a letter and hold letters, digits, '_'")
        return value.lower()

    @model_validator(mode="after")
    def _connection_security(self) -> Settings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        mechanism = self.kafka_sasl_mechanism
        if sasl and mechanism is None:
            raise ValueError(f"METERLY_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} "
                             "needs METERLY_KAFKA_SASL_MECHANISM")
        if not sasl and mechanism is not None:
            raise ValueError("METERLY_KAFKA_SASL_MECHANISM is set, so "
                             "METERLY_KAFKA_SECURITY_PROTOCOL must be SASL_SSL or SASL_PLAINTEXT")
        if sasl and mechanism != "OAUTHBEARER" and not (
                self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(f"SASL {mechanism} needs METERLY_KAFKA_SASL_USERNAME and "
                             "METERLY_KAFKA_SASL_PASSWORD")
        if mechanism == "OAUTHBEARER" and not (
                self.kafka_oauth_token_url and self.kafka_oauth_client_id
                and self.kafka_oauth_client_secret):
            raise ValueError("SASL OAUTHBEARER needs METERLY_KAFKA_OAUTH_TOKEN_URL, "
                             "METERLY_KAFKA_OAUTH_CLIENT_ID and METERLY_KAFKA_OAUTH_CLIENT_SECRET")
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError("METERLY_KAFKA_SSL_CERT_FILE and METERLY_KAFKA_SSL_KEY_FILE go "
                             "together")
        if (self.cassandra_username is None) != (self.cassandra_password is None):
            raise ValueError("METERLY_CASSANDRA_USERNAME and METERLY_CASSANDRA_PASSWORD go "
                             "together")
        if (self.cassandra_ssl_cert_file is None) != (self.cassandra_ssl_key_file is None):
            raise ValueError("METERLY_CASSANDRA_SSL_CERT_FILE and METERLY_CASSANDRA_SSL_KEY_FILE "
                             "go together")
        return self

    @property
    def cassandra_security(self) -> CassandraSecurity:
        from storage.cassandra import CassandraSecurity  # the driver only where it is used

        return CassandraSecurity(
            self.cassandra_username, self.cassandra_password,
            self.cassandra_ssl or self.cassandra_ssl_ca_file is not None,
            self.cassandra_ssl_ca_file, self.cassandra_ssl_cert_file,
            self.cassandra_ssl_key_file)

    @property
    def kafka_tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    @property
    def public_base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def cache_dir(self) -> Path:
        return self.cache or self.home / "cache"

    @property
    def provisions_kafka(self) -> bool:
        return not self.kafka_bootstrap

    @property
    def provisions_cassandra(self) -> bool:
        return not self.cassandra_hosts


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
