"""Find a Java 17+ runtime for the provisioned services."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from ops.infra.artifacts import ProvisioningError

MIN_JAVA = 17


@lru_cache(maxsize=1)
def java_executable() -> str:
    home = os.environ.get("JAVA_HOME")
    candidate = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not candidate or not Path(candidate).exists():
        raise ProvisioningError(
            "Java 17 or newer is needed to run Kafka and Cassandra locally and none was "
            "found (Debian: apt-get install -y openjdk-17-jre-headless), or point "
            "METERLY_KAFKA_BOOTSTRAP and METERLY_CASSANDRA_HOSTS at existing clusters"
        )
    out = subprocess.run(
        [candidate, "-version"], capture_output=True, text=True, check=False
    ).stderr
    match = re.search(r'version "(\d+)', out)
    if match is None or int(match.group(1)) < MIN_JAVA:
        raise ProvisioningError(f"{candidate} is not Java {MIN_JAVA}+: {out.strip()[:200]}")
    return candidate
