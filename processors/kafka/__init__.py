"""Kafka mechanisms the workers share: producers, transactions, offsets, retries, Faust."""
