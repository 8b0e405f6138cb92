"""S3Proxy: an S3-compatible object store from Maven Central, for tests and local runs.

It serves the S3 API on 127.0.0.1 with jclouds' filesystem backend, so buckets are plain
directories under the service's data directory. Its access key ("identity") and secret key
("credential") are generated once per Meterly home and kept, readable by the owner only, in
``<state>/credentials.json``; nothing secret is committed or fixed in code.

S3Proxy logs through logback and, without a configuration, at DEBUG (every request). It is
given one explicitly with ``-Dlogback.configurationFile=``: its jar ships none, so that file
is the whole configuration.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ops.infra.java import java_executable
from ops.infra.process import Service

NAME = "s3proxy"


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str


def endpoint(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def credentials_file(state: Path) -> Path:
    return state / "credentials.json"


def credentials(state: Path) -> S3Credentials:
    """This home's S3Proxy keys, generated on first use and kept in the state directory."""
    path = credentials_file(state)
    if not path.exists():
        state.mkdir(parents=True, exist_ok=True)
        keys = {"access_key": f"meterly-{secrets.token_hex(8)}",
                "secret_key": secrets.token_urlsafe(32)}
        # Written under another name and renamed: a reader never sees half a file.
        partial = path.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(keys, out)
        os.replace(partial, path)
    keys = json.loads(path.read_text())
    return S3Credentials(keys["access_key"], keys["secret_key"])


def properties(url: str, keys: S3Credentials, basedir: Path) -> str:
    settings = {
        "s3proxy.endpoint": url,
        "s3proxy.authorization": "aws-v2-or-v4",
        "s3proxy.identity": keys.access_key,
        "s3proxy.credential": keys.secret_key,
        # "filesystem" is deprecated in 2.6 (it says so at start); its successor insists on
        # backend keys although a directory has none, so these two are placeholders.
        "jclouds.provider": "filesystem-nio2",
        "jclouds.identity": "local",
        "jclouds.credential": "local",
        "jclouds.filesystem.basedir": str(basedir),
    }
    return "".join(f"{k}={v}\n" for k, v in settings.items())


_LOGBACK = """<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %logger{36} - %msg%n</pattern></encoder>
  </appender>
  <logger name="org.eclipse.jetty" level="WARN"/>
  <logger name="org.gaul.shaded.org.eclipse.jetty" level="WARN"/>
  <logger name="jclouds" level="WARN"/>
  <logger name="org.jclouds" level="WARN"/>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
"""


def s3proxy_ready(host: str, port: int) -> bool:
    """True once S3Proxy answers HTTP; any status counts (an anonymous request gets 403)."""
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def service(lib: Path, state: Path, logs: Path, run: Path, host: str, port: int) -> Service:
    """S3Proxy on ``host:port``; writes its configuration (and keys, once) under ``state``."""
    java = java_executable()
    conf = state / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    data = state / "data"
    data.mkdir(parents=True, exist_ok=True)
    props = conf / "s3proxy.conf"
    # The properties hold the secret key: owner-only, like the credentials file.
    fd = os.open(props, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(properties(endpoint(host, port), credentials(state), data))
    logback = conf / "logback.xml"
    logback.write_text(_LOGBACK)
    marker = f"-Dmeterly.service={NAME}@{state}"
    return Service(
        name=NAME,
        argv=[
            java, marker, "-Xms64m", "-Xmx256m", "-XX:+UseSerialGC",
            "-Djava.awt.headless=true", f"-Dlogback.configurationFile={logback}",
            "-cp", f"{lib}/*", "org.gaul.s3proxy.Main", "--properties", str(props),
        ],
        workdir=state,
        log=logs / f"{NAME}.log",
        pidfile=run / f"{NAME}.pid",
        marker=marker,
        ports=[(host, port)],
        ready=functools.partial(s3proxy_ready, host, port),
    )
