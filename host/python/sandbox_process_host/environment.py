"""The environment a child starts from when nobody says otherwise, as the
Rust host builds it (host/src/capability/environment.rs): who it runs as,
from the user database; where commands are found; a UTF-8 locale.

git, pip, npm, cargo and shells need HOME; without a UTF-8 locale programs
count bytes as characters. Only PATH is taken from this process's own
environment: nothing else of it (tokens, credentials, proxies) reaches a
child unless the embedder passes it. No TERM: a child has pipes, not a
terminal.
"""

import os
import pwd
from typing import Dict, Optional

#: PATH for children when the host has none.
FALLBACK_PATH = "/usr/local/bin:/usr/bin:/bin"
#: LANG for children unless the embedder chooses another.
DEFAULT_LOCALE = "C.UTF-8"
#: HOME of a user without a user database entry (what login(1) and Docker
#: use); not the working directory, where tools would scatter dotfiles.
FALLBACK_HOME = "/"
#: SHELL of a user without an entry: passwd(5) reads an empty shell as /bin/sh.
FALLBACK_SHELL = "/bin/sh"


def current_user() -> Optional[pwd.struct_passwd]:
    """The user database entry of the effective uid, or None when there is
    none (an arbitrary uid in a container)."""
    try:
        return pwd.getpwuid(os.geteuid())
    except KeyError:
        return None


def user_env(entry: Optional[pwd.struct_passwd]) -> Dict[str, str]:
    """HOME, USER, LOGNAME and SHELL, in this order. Without an entry (or
    with empty fields) HOME is / and SHELL /bin/sh, and USER and LOGNAME are
    left out: a made-up name would not be found by tools either."""
    env = {"HOME": (entry.pw_dir if entry else "") or FALLBACK_HOME}
    if entry and entry.pw_name:
        env["USER"] = entry.pw_name
        env["LOGNAME"] = entry.pw_name
    env["SHELL"] = (entry.pw_shell if entry else "") or FALLBACK_SHELL
    return env


_UNSET = object()


def default_base_env(user=_UNSET, path: Optional[str] = None, locale: str = DEFAULT_LOCALE) -> Dict[str, str]:
    """The default base environment of a child: the user's variables, then
    PATH (``path``, else this process's, else the fallback) and LANG. No
    other variable of ``os.environ`` is read."""
    entry = current_user() if user is _UNSET else user
    env = user_env(entry)
    env["PATH"] = path or os.environ.get("PATH") or FALLBACK_PATH
    env["LANG"] = locale
    return env
