"""URLs with a password in them (a storage's, a job server's) made safe to print: light, with
no SQLAlchemy or Optuna, so that a command masks its own command line as it starts
(search.cli.mask_command_line)."""

from __future__ import annotations

import re

# scheme://user:PASSWORD@host...: the password runs from the first ':' after the user to the
# last '@' before the host, so that an unescaped '@' in it is hidden too, and a user with an '@'
# of its own (Azure's user@server) does not hide it. Parsed by hand: a URL that SQLAlchemy
# cannot parse (a bad port, one or no slash after the scheme, no scheme, a space before it, a
# scheme without its ':', a space after the '//') must not be printed with its password either.
# Greedy, to the last such '@': a password holding '/' and '@' is hidden whole, at the cost of
# hiding the host too where the query holds an '@'.
PASSWORD = re.compile(
    r"^(?P<head>\s*(?:[A-Za-z][\w+.-]*(?::/{0,2}|//)\s*[^:/?#\s]*:|[^:/?#\s]*:(?!/)))"
    r"(?P<password>.*)@(?=[^@/?#]*(?:[/?#]|$))", re.S)
QUERY_PASSWORD = re.compile(r"(?i)(?P<key>[?&]password=)[^&#]*")


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for logs, errors and study attrs."""
    url = PASSWORD.sub(r"\g<head>***@", url, count=1)
    return QUERY_PASSWORD.sub(r"\g<key>***", url)


def mask_word(word: str) -> str:
    """A command-line word with any storage URL's password in it masked: the URL itself, or an
    option's value given as ``--storage=URL``."""
    key, eq, value = word.partition("=")
    return f"{key}={mask_url(value)}" if eq and word.startswith("-") else mask_url(word)
