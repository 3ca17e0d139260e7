"""The sample's proxy pool: identities, credentials, and each proxy's role in the history.

Roles are drawn so that every ProxyWhirl quirk the exporter must handle is present (seeded
statuses, proxies never checked, proxies checked before they were added, proxies that die
or recover, a pool growing day by day, credentials encrypted or legacy plain text) as long
as the pool is big enough to hold them.
"""

from __future__ import annotations

import math
import random
import string
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

from export_assets.lib.sample.hostile import HOSTILE_STRINGS
from export_assets.lib.sample.keys import SampleCipher
from export_assets.lib.source.schema import DATETIME_TEXT_FORMAT

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MICROSECOND = timedelta(microseconds=1)
LATENCY_SIGMA = 0.45  # spread of the lognormal response times around a proxy's median

PROTOCOLS = ("http", "https", "socks4", "socks5")
_PROTOCOL_WEIGHTS = (45, 20, 10, 25)
_PORTS = {
    "http": (80, 3128, 8080, 8888, 8000, 8118, 999),
    "https": (443, 8443, 3129),
    "socks4": (1080, 4145, 4153),
    "socks5": (1080, 1085, 9050, 7890),
}
# First octets of addresses that look public (no private, loopback, multicast or test nets).
_FIRST_OCTETS = tuple(n for n in range(1, 224) if n not in {10, 100, 127, 169, 172, 192, 198, 203})

# (country_code, country_name, region, city, latitude, longitude, ((asn, isp_name), ...))
_Location = tuple[str, str, str | None, str, float, float, tuple[tuple[int, str], ...]]
_LOCATIONS: tuple[_Location, ...] = (
    (
        "US",
        "United States",
        "California",
        "Los Angeles",
        34.0522,
        -118.2437,
        ((16509, "Amazon.com, Inc."), (7922, "Comcast Cable Communications, LLC")),
    ),
    (
        "US",
        "United States",
        "Virginia",
        "Ashburn",
        39.0438,
        -77.4874,
        ((14618, "Amazon.com, Inc."), (396982, "Google LLC")),
    ),
    (
        "DE",
        "Germany",
        "Hesse",
        "Frankfurt am Main",
        50.1109,
        8.6821,
        ((24940, "Hetzner Online GmbH"), (3320, "Deutsche Telekom AG")),
    ),
    (
        "NL",
        "Netherlands",
        "North Holland",
        "Amsterdam",
        52.3676,
        4.9041,
        ((14061, "DigitalOcean, LLC"),),
    ),
    ("RU", "Russia", "Moscow", "Москва", 55.7558, 37.6173, ((12389, "PJSC Rostelecom"),)),
    ("UA", "Ukraine", "Kyiv City", "Київ", 50.4501, 30.5234, ((15895, "Kyivstar PJSC"),)),
    ("CN", "China", "Guangdong", "深圳", 22.5431, 114.0579, ((4134, "CHINANET-BACKBONE"),)),
    ("JP", "Japan", "Tokyo", "東京", 35.6762, 139.6503, ((2516, "KDDI CORPORATION"),)),
    ("EG", "Egypt", "Cairo Governorate", "القاهرة", 30.0444, 31.2357, ((8452, "TE Data"),)),
    (
        "BR",
        "Brazil",
        "São Paulo",
        "São Paulo",
        -23.5505,
        -46.6333,
        ((28573, "Claro NXT Telecomunicacoes Ltda"),),
    ),
    (
        "IN",
        "India",
        "Maharashtra",
        "Mumbai",
        19.076,
        72.8777,
        ((9829, "National Internet Backbone"),),
    ),
    ("SG", "Singapore", None, "Singapore", 1.3521, 103.8198, ((16509, "Amazon.com, Inc."),)),
    (
        "CI",
        "Côte d'Ivoire",
        "Abidjan",
        "Abidjan",
        5.36,
        -4.0083,
        ((29571, "Orange Côte d'Ivoire"),),
    ),
)

# (source, source_url template or None); '{protocol}' is filled in per proxy.
_SOURCES: tuple[tuple[str, str | None], ...] = (
    ("proxyscrape", "https://api.proxyscrape.com/v2/?request=getproxies&protocol={protocol}"),
    ("free-proxy-list.net", "https://free-proxy-list.net/"),
    (
        "geonode",
        "https://proxylist.geonode.com/api/proxy-list?limit=500&page=1&protocols={protocol}",
    ),
    (
        "TheSpeedX/PROXY-List",
        "https://raw.githubusercontent.com/TheSpeedX/PROXY-List/master/{protocol}.txt",
    ),
    ("fetched", None),
    ("user", None),
)

# Forms ProxyWhirl's readers accept besides its own; written only in discovered_at.
_LIBERAL_FORMATS = ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f+00:00")


def to_microseconds(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    return (moment - EPOCH) // ONE_MICROSECOND


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.combine(day, time(), tzinfo=UTC)


@dataclass(frozen=True)
class Reliability:
    """How a proxy answers checks: its odds of success, a window where it always fails, latency."""

    success_odds: float
    down_from_us: int  # checks at [down_from_us, down_until_us) fail, in epoch microseconds
    down_until_us: int
    latency_mu: float  # log of the median response time in milliseconds


@dataclass(frozen=True)
class SampleProxy:
    """One proxy of the sample pool, with its plaintext secrets and its role in the history."""

    index: int
    url: str
    protocol: str
    host: str
    port: int
    username: str | None  # plaintext, for leak tests to look for
    password: str | None
    stored_username: str | None  # as proxy_identities holds it
    stored_password: str | None
    country_code: str | None
    country_name: str | None
    region: str | None
    city: str | None
    latitude: float | None
    longitude: float | None
    asn: int | None
    isp_name: str | None
    is_residential: bool
    is_datacenter: bool
    source: str
    source_url: str | None
    discovered_at: datetime
    discovered_at_text: str  # as proxy_identities holds it (a few in liberal forms)
    checked: bool  # takes part in validation batches
    seed_latency_ms: float | None  # set when added as already validated (one seed check)
    echoes_credentials: bool  # remote errors quote its URL with credentials
    reliability: Reliability
    # Set when it was validated before it was added (its url in a fetched list checked
    # before being saved): those checks are in the history, not in its status.
    checked_before_add_from: datetime | None = None

    @property
    def checked_from(self) -> datetime:
        """When validation batches start taking it: its discovery, or earlier."""
        return self.checked_before_add_from or self.discovered_at

    @property
    def seeded(self) -> bool:
        """Whether the proxy was added as already validated (a status with no history row)."""
        return self.seed_latency_ms is not None

    @property
    def seed_checked_at(self) -> str:
        """When the seed check happened, in ProxyWhirl's DATETIME text (its discovery time)."""
        return self.discovered_at.strftime(DATETIME_TEXT_FORMAT)

    @property
    def url_with_credentials(self) -> str:
        """The URL a client uses, ``user:pass@`` included when the proxy has credentials."""
        if self.username is None:
            return self.url
        return f"{self.protocol}://{self.username}:{self.password}@{self.host}:{self.port}"


def build_pool(
    rng: random.Random, count: int, first_day: date, last_day: date, cipher: SampleCipher
) -> tuple[SampleProxy, ...]:
    """Draw ``count`` proxies whose history spans ``first_day`` to ``last_day``."""
    window_start = day_start(first_day)
    window_end = day_start(last_day + timedelta(days=1))
    endpoints = _endpoints(rng, count)

    # Role assignment. Position 0 of the shuffle is an anchor: always checked, steady and
    # known before the window, so that even a tiny pool has something to validate at 00:00.
    order = list(range(count))
    rng.shuffle(order)
    n_seed_only = min(2, count - 1)
    n_never = max(1, count // 100) if count >= 10 else 0
    anchor = order[0]
    seed_only = set(order[1 : 1 + n_seed_only])
    never = set(order[1 + n_seed_only : 1 + n_seed_only + n_never])
    others = order[1 + n_seed_only + n_never :]  # checked, besides the anchor
    n_seed_checked = min(len(others), max(1, round(0.02 * count) - n_seed_only))
    seeded = seed_only | set(others[:n_seed_checked])

    behaviours = _behaviours(rng, others)
    behaviours[anchor] = "always"
    flaky = [i for i in others if behaviours[i] == "flaky"]

    credentialed, echoing, legacy = _credential_roles(
        rng, count, order, flaky or others or [anchor]
    )
    in_window = set(rng.sample(others, round(0.15 * len(others)))) if others else set()
    in_window |= {i for i in sorted(seed_only | never) if rng.random() < 0.15}
    pre_window_plain = [i for i in order if i not in in_window and i not in seeded and i != anchor]
    liberal = dict(zip(pre_window_plain[:3], _LIBERAL_FORMATS, strict=False))
    carriers = _hostile_sources(rng, count)

    pool: list[SampleProxy] = []
    for index, (protocol, host, port) in enumerate(endpoints):
        if index in in_window:
            span = (window_end - window_start) - timedelta(hours=1)
            discovered = window_start + rng.random() * span
        else:
            discovered = window_start - timedelta(hours=1) - rng.random() * timedelta(days=30)
        discovered = discovered.replace(microsecond=rng.randrange(1_000_000))
        text_format = liberal.get(index, DATETIME_TEXT_FORMAT)
        if text_format == "%Y-%m-%d %H:%M:%S":
            discovered = discovered.replace(microsecond=0)  # the text must be the same instant
        latency_mu = math.log(rng.uniform(80.0, 900.0))
        username = password = stored_username = stored_password = None
        if index in credentialed:
            username = f"pw-user-{index:04d}"
            password = _password(rng)
            if index in legacy:
                stored_username, stored_password = username, password
            else:
                stored_username = cipher.stored_credential(username)
                stored_password = cipher.stored_credential(password)
        geo = _geography(rng)
        source, source_url = rng.choice(_SOURCES)
        batch_added = rng.random() < 0.4  # add_proxies_batch drops country_code and source_url
        if index in carriers:
            source = carriers[index]
        kind = rng.choices(("datacenter", "residential", "neither"), (60, 25, 15))[0]
        pool.append(
            SampleProxy(
                index=index,
                url=f"{protocol}://{host}:{port}",
                protocol=protocol,
                host=host,
                port=port,
                username=username,
                password=password,
                stored_username=stored_username,
                stored_password=stored_password,
                country_code=None if batch_added else geo[0],
                country_name=geo[1],
                region=geo[2],
                city=geo[3],
                latitude=geo[4],
                longitude=geo[5],
                asn=geo[6],
                isp_name=geo[7],
                is_residential=kind == "residential",
                is_datacenter=kind == "datacenter",
                source=source,
                source_url=None
                if batch_added or source_url is None
                else source_url.format(protocol=protocol),
                discovered_at=discovered,
                discovered_at_text=discovered.strftime(text_format),
                checked=index not in seed_only and index not in never,
                seed_latency_ms=math.exp(rng.gauss(latency_mu, LATENCY_SIGMA))
                if index in seeded
                else None,
                echoes_credentials=index in echoing,
                reliability=_reliability(
                    rng,
                    behaviours.get(index, "steady"),
                    max(discovered, window_start),
                    window_end,
                    latency_mu,
                ),
            )
        )
    return tuple(_checked_before_add(pool, in_window, window_start))


def _checked_before_add(
    pool: list[SampleProxy], in_window: set[int], window_start: datetime
) -> list[SampleProxy]:
    """Every third proxy discovered inside the window (and checked, not seeded) was checked
    for a few hours before it was added, as when a fetched list is validated before being
    saved. Chosen without drawing from ``rng``, so the rest of the sample stays as it was."""
    candidates = [
        proxy for proxy in pool if proxy.index in in_window and proxy.checked and not proxy.seeded
    ]
    chosen = {}
    for proxy in sorted(candidates, key=lambda p: p.index)[::3]:
        since = proxy.discovered_at - timedelta(hours=2 + proxy.index % 10)
        if since >= window_start:
            chosen[proxy.index] = replace(proxy, checked_before_add_from=since)
    return [chosen.get(proxy.index, proxy) for proxy in pool]


def _endpoints(rng: random.Random, count: int) -> list[tuple[str, str, int]]:
    seen: set[tuple[str, str, int]] = set()
    endpoints: list[tuple[str, str, int]] = []
    while len(endpoints) < count:
        protocol = rng.choices(PROTOCOLS, _PROTOCOL_WEIGHTS)[0]
        if rng.random() < 0.03:
            host = f"gw{rng.randrange(1, 999)}.residential-proxy.example"
        else:
            octets = (rng.choice(_FIRST_OCTETS), *(rng.randrange(256) for _ in range(2)))
            host = ".".join(map(str, (*octets, rng.randrange(1, 255))))
        port = rng.choice(_PORTS[protocol]) if rng.random() < 0.8 else rng.randrange(1024, 65536)
        endpoint = (protocol, host, port)
        if endpoint not in seen:
            seen.add(endpoint)
            endpoints.append(endpoint)
    return endpoints


def _behaviours(rng: random.Random, indices: list[int]) -> dict[int, str]:
    """Split checked proxies into steady, always-healthy, flaky, dying and recovering ones."""
    n = len(indices)
    n_dying = max(1, round(0.08 * n)) if n >= 4 else 0
    n_recovering = max(1, round(0.06 * n)) if n >= 4 else 0
    n_flaky = max(1, round(0.25 * n)) if n >= 2 else 0
    n_always = round(0.2 * n)
    labels = (
        ["dying"] * n_dying
        + ["recovering"] * n_recovering
        + ["flaky"] * n_flaky
        + ["always"] * n_always
    )
    labels += ["steady"] * (n - len(labels))
    rng.shuffle(labels)
    return dict(zip(indices, labels, strict=True))


def _credential_roles(
    rng: random.Random, count: int, order: list[int], echo_candidates: list[int]
) -> tuple[set[int], set[int], set[int]]:
    """Pick proxies with credentials, those whose errors echo them, and legacy plain ones."""
    n_credentialed = min(count, max(3, round(0.15 * count)))
    n_echoing = min(len(echo_candidates), max(1, n_credentialed // 4))
    echoing = set(rng.sample(echo_candidates, n_echoing))
    rest = [i for i in order if i not in echoing]
    credentialed = echoing | set(rng.sample(rest, min(len(rest), n_credentialed - len(echoing))))
    plain_candidates = sorted(credentialed - echoing)
    n_legacy = min(len(plain_candidates), max(1, n_credentialed // 8))
    legacy = set(rng.sample(plain_candidates, n_legacy))
    return credentialed, echoing, legacy


def _hostile_sources(rng: random.Random, count: int) -> dict[int, str]:
    """Give a few proxies sources made of hostile strings, every string on some proxy."""
    carriers = rng.sample(range(count), min(count, len(HOSTILE_STRINGS), max(4, count // 10)))
    k = len(carriers)
    return {
        proxy: " | ".join(s for n, s in enumerate(HOSTILE_STRINGS) if n % k == slot)
        for slot, proxy in enumerate(carriers)
    }


def _password(rng: random.Random) -> str:
    """A distinctive 20-character secret holding characters that break naive URL handling."""
    alphabet = string.ascii_letters + string.digits
    chars = [rng.choice(alphabet) for _ in range(15)] + [":", "@", "/", "%", rng.choice("'\"")]
    rng.shuffle(chars)
    return "".join(chars)


def _geography(
    rng: random.Random,
) -> tuple[
    str | None,
    str | None,
    str | None,
    str | None,
    float | None,
    float | None,
    int | None,
    str | None,
]:
    if rng.random() < 0.1:  # geolocation lookup failed: nothing known
        return (None, None, None, None, None, None, None, None)
    code, name, region, city, lat, lon, isps = rng.choice(_LOCATIONS)
    asn, isp = rng.choice(isps)
    return (
        code,
        name,
        region,
        city,
        round(lat + rng.uniform(-0.05, 0.05), 4),
        round(lon + rng.uniform(-0.05, 0.05), 4),
        asn,
        isp,
    )


def _reliability(
    rng: random.Random,
    behaviour: str,
    active_from: datetime,
    window_end: datetime,
    latency_mu: float,
) -> Reliability:
    start, end = to_microseconds(active_from), to_microseconds(window_end)
    span = max(end - start, 1)
    if behaviour == "always":
        return Reliability(1.0, 0, 0, latency_mu)
    if behaviour == "flaky":
        return Reliability(rng.uniform(0.45, 0.85), 0, 0, latency_mu)
    if behaviour == "dying":  # fails for good from a moment in the first 70% of its life
        death = start + int(rng.uniform(0.05, 0.7) * span)
        return Reliability(rng.uniform(0.9, 0.99), death, 2**62, latency_mu)
    if behaviour == "recovering":  # an outage long enough to be declared dead, then back
        down = start + int(rng.uniform(0.1, 0.4) * span)
        return Reliability(
            rng.uniform(0.9, 0.99), down, down + int(rng.uniform(0.15, 0.3) * span), latency_mu
        )
    return Reliability(rng.uniform(0.93, 0.995), 0, 0, latency_mu)
