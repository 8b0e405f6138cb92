"""Usage: events validated, counted exactly once, mirrored to Cassandra, watched for thresholds."""
