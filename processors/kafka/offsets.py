"""How far a consumer group is behind: committed offsets against high watermarks."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition


def consumer_lag(consumer: Consumer, partitions: list[TopicPartition],
                 timeout: float = 10.0) -> int:
    """Records of ``partitions`` that ``consumer``'s group has not committed past.

    A partition with no committed offset counts from 0. Kafka errors are raised, so callers
    choose whether to retry (``processors.kafka.retry``) or to report and go on.
    """
    lag = 0
    for tp in consumer.committed(partitions, timeout=timeout):
        _low, high = consumer.get_watermark_offsets(
            TopicPartition(tp.topic, tp.partition), timeout=timeout, cached=False)
        lag += max(0, high - max(tp.offset, 0))
    return lag


def topic_depth(consumer: Consumer, topic: str, timeout: float = 10.0) -> int:
    """Records a topic holds now (high minus low watermark, all partitions): for a
    dead-letter topic, how much is waiting for a person."""
    partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
    depth = 0
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout,
                                                   cached=False)
        depth += max(0, high - low)
    return depth
