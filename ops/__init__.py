"""Operating Meterly: settings, provisioning of Kafka and Cassandra, supervision, the CLI."""
