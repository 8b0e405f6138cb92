"""Local Kafka, Cassandra and S3-compatible storage from Maven Central artifacts, without Docker."""
