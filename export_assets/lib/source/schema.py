"""ProxyWhirl's database schema: the DDL its SQLModel tables emit, and the parts we rely on.

The DDL is the one SQLAlchemy emits for ProxyWhirl 0.3.3's models (``SQLiteStorage``); the
sample deployment creates its tables with it, and the source verifies the columns it reads.
"""

from __future__ import annotations

PROXYWHIRL_DDL: tuple[str, ...] = (
    """CREATE TABLE proxy_identities (
\turl VARCHAR NOT NULL,
\tprotocol VARCHAR NOT NULL,
\thost VARCHAR NOT NULL,
\tport INTEGER NOT NULL,
\tusername VARCHAR,
\tpassword VARCHAR,
\tcountry_code VARCHAR,
\tcountry_name VARCHAR,
\tregion VARCHAR,
\tcity VARCHAR,
\tlatitude FLOAT,
\tlongitude FLOAT,
\tasn INTEGER,
\tisp_name VARCHAR,
\tis_residential BOOLEAN NOT NULL,
\tis_datacenter BOOLEAN NOT NULL,
\tsource VARCHAR NOT NULL,
\tsource_url VARCHAR,
\tdiscovered_at DATETIME NOT NULL,
\tPRIMARY KEY (url)
)""",
    "CREATE INDEX ix_proxy_identities_source ON proxy_identities (source)",
    "CREATE INDEX ix_proxy_identities_protocol ON proxy_identities (protocol)",
    "CREATE INDEX ix_proxy_identities_country_code ON proxy_identities (country_code)",
    "CREATE INDEX ix_proxy_identities_host ON proxy_identities (host)",
    """CREATE TABLE validation_results (
\tid INTEGER NOT NULL,
\tproxy_url VARCHAR NOT NULL,
\tvalidated_at DATETIME NOT NULL,
\tis_valid BOOLEAN NOT NULL,
\tresponse_time_ms FLOAT,
\terror_type VARCHAR,
\terror_message VARCHAR,
\tPRIMARY KEY (id)
)""",
    "CREATE INDEX ix_validation_results_proxy_url ON validation_results (proxy_url)",
    "CREATE INDEX ix_validation_results_validated_at ON validation_results (validated_at)",
    """CREATE TABLE proxy_statuses (
\tproxy_url VARCHAR NOT NULL,
\thealth_status VARCHAR NOT NULL,
\tlast_success_at DATETIME,
\tlast_failure_at DATETIME,
\tlast_check_at DATETIME,
\tconsecutive_successes INTEGER NOT NULL,
\tconsecutive_failures INTEGER NOT NULL,
\ttotal_checks INTEGER NOT NULL,
\ttotal_successes INTEGER NOT NULL,
\tavg_response_time_ms FLOAT,
\tsuccess_rate_7d FLOAT,
\tupdated_at DATETIME NOT NULL,
\tPRIMARY KEY (proxy_url)
)""",
    "CREATE INDEX ix_proxy_statuses_health_status ON proxy_statuses (health_status)",
    "CREATE INDEX ix_proxy_statuses_success_rate_7d ON proxy_statuses (success_rate_7d)",
    "CREATE INDEX ix_proxy_statuses_last_success_at ON proxy_statuses (last_success_at)",
)

# The columns the exporter reads, per table. Anything else ProxyWhirl adds is ignored.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "proxy_identities": (
        "url",
        "protocol",
        "host",
        "port",
        "username",
        "password",
        "country_code",
        "country_name",
        "region",
        "city",
        "latitude",
        "longitude",
        "asn",
        "isp_name",
        "is_residential",
        "is_datacenter",
        "source",
        "source_url",
        "discovered_at",
    ),
    "validation_results": (
        "id",
        "proxy_url",
        "validated_at",
        "is_valid",
        "response_time_ms",
        "error_type",
        "error_message",
    ),
    "proxy_statuses": (
        "proxy_url",
        "health_status",
        "last_success_at",
        "last_failure_at",
        "last_check_at",
        "consecutive_successes",
        "consecutive_failures",
        "total_checks",
        "total_successes",
        "avg_response_time_ms",
        "success_rate_7d",
        "updated_at",
    ),
}

# ProxyWhirl writes DATETIME columns as naive UTC text in this form.
DATETIME_TEXT_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
