"""Fetch a Java service's jars from Maven Central into the local cache, once.

Maven resolves the transitive runtime dependencies from a throw-away pom; the result is
a flat ``lib/`` directory that ``java -cp 'lib/*'`` runs from. A marker file is written
last, so an interrupted download is redone rather than used half-complete.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape


class ProvisioningError(RuntimeError):
    """A service could not be fetched or started; the message says why and what to do."""


@dataclass(frozen=True)
class Artifact:
    group: str
    artifact: str
    version: str


@dataclass(frozen=True)
class ArtifactSet:
    """The jars one service runs from, cached as ``<cache>/<name>/lib``."""

    name: str
    artifacts: tuple[Artifact, ...]


KAFKA_VERSION = "4.1.0"
CASSANDRA_VERSION = "5.0.5"
S3PROXY_VERSION = "2.6.0"

KAFKA = ArtifactSet(
    f"kafka-{KAFKA_VERSION}",
    (
        Artifact("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
        # Kafka 4.1 logs through slf4j 1.7, so the binding must be the slf4j 1.x one.
        Artifact("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3"),
        Artifact("org.apache.logging.log4j", "log4j-core", "2.24.3"),
    ),
)
CASSANDRA = ArtifactSet(
    f"cassandra-{CASSANDRA_VERSION}",
    (Artifact("org.apache.cassandra", "cassandra-all", CASSANDRA_VERSION),),
)
S3PROXY = ArtifactSet(
    f"s3proxy-{S3PROXY_VERSION}",
    (Artifact("org.gaul", "s3proxy", S3PROXY_VERSION),),
)

_MARKER = ".complete"


def _pom(artifacts: tuple[Artifact, ...]) -> str:
    deps = "\n".join(
        f"    <dependency><groupId>{escape(a.group)}</groupId>"
        f"<artifactId>{escape(a.artifact)}</artifactId>"
        f"<version>{escape(a.version)}</version></dependency>"
        for a in artifacts
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.meterly.provision</groupId>
  <artifactId>fetch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}
  </dependencies>
</project>
"""


def lib_dir(cache: Path, artifact_set: ArtifactSet) -> Path:
    return cache / artifact_set.name / "lib"


def is_cached(cache: Path, artifact_set: ArtifactSet) -> bool:
    return (cache / artifact_set.name / _MARKER).exists()


def ensure(cache: Path, artifact_set: ArtifactSet, log: Path) -> Path:
    """Return the lib directory of ``artifact_set``, downloading it on first use."""
    target = lib_dir(cache, artifact_set)
    if is_cached(cache, artifact_set):
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ProvisioningError(
            "Maven ('mvn') is needed once to fetch Kafka and Cassandra from Maven Central; "
            "install it (Debian: apt-get install -y maven) or point METERLY_KAFKA_BOOTSTRAP "
            "and METERLY_CASSANDRA_HOSTS at existing clusters"
        )
    staging = cache / f"{artifact_set.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="meterly-pom-") as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_text(_pom(artifact_set.artifacts))
        with log.open("ab") as out:
            proc = subprocess.run(
                [
                    mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
                    f"-DoutputDirectory={staging / 'lib'}", "-DincludeScope=runtime",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
    if proc.returncode != 0:
        raise ProvisioningError(
            f"fetching {artifact_set.name} from Maven Central failed (mvn exit "
            f"{proc.returncode}); see {log}:\n{tail(log)}"
        )
    final = cache / artifact_set.name
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    (final / _MARKER).write_text("\n".join(sorted(p.name for p in target.glob("*.jar"))))
    return target


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])
