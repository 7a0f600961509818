"""The Kafka listener's counters: what a finished request adds to rilke.server.stats.

Called on the event loop once per answered request with the decoded request and response
bodies: the request count and latency of its API, every non-zero ``error_code`` of the
response (a walk of its dicts and lists, never of record bytes), and for Produce and Fetch the
bytes and records per topic (the batch headers' record counts, one read per batch).
"""

from __future__ import annotations

from typing import Any

from rilke.server.kafka import schemas as sc
from rilke.server.kafka.types import Message
from rilke.server.stats import ApiStats, BrokerStats, count_records

LISTENER = "kafka"


class KafkaCounters:
    """The ApiStats of each Kafka API (bound once per api key) over a BrokerStats."""

    def __init__(self, stats: BrokerStats) -> None:
        self.stats = stats
        self._apis: dict[int, ApiStats] = {}

    def api(self, api_key: int) -> ApiStats:
        found = self._apis.get(api_key)
        if found is None:
            name = sc.API_NAMES.get(api_key, f"api_{api_key}")
            found = self._apis[api_key] = self.stats.api(LISTENER, name)
        return found

    def answered(
        self, api_key: int, request: Message, response: Message | None, seconds: float
    ) -> None:
        """Count one request answered with ``response`` (None: Produce with acks=0, or a
        failed handler: then the request's records are not counted as produced)."""
        api = self.api(api_key)
        api.requests += 1
        api.latency.observe(seconds)
        if response is not None:
            count_error_codes(response, api)
        if api_key == sc.PRODUCE:
            self._produced(request, response)
        elif api_key == sc.FETCH and response is not None:
            for topic in response["responses"]:
                topic_stats = self.stats.topic(topic["topic"])
                for p in topic["partitions"]:
                    if p["records"]:
                        topic_stats.fetched(p["records"])

    def failed(self, api_key: int, code: int, seconds: float) -> None:
        """A request whose handler raised (its connection is closed)."""
        api = self.api(api_key)
        api.requests += 1
        api.latency.observe(seconds)
        api.error(code)

    def _produced(self, request: Message, response: Message | None) -> None:
        failed: set[tuple[str, int]] = set()
        if response is not None:
            for topic in response["responses"]:
                for p in topic["partition_responses"]:
                    if p["error_code"]:
                        failed.add((topic["name"], p["index"]))
        elif request["acks"] != 0:
            return  # no answer and acks != 0: the handler failed, nothing to count
        for topic in request["topic_data"]:
            name = topic["name"]
            topic_stats = self.stats.topic(name)
            for p in topic["partition_data"]:
                records = p["records"]
                if records and (name, p["index"]) not in failed:
                    topic_stats.produced(len(records), count_records(records))


def count_error_codes(message: Any, api: ApiStats) -> None:
    """Add every non-zero ``error_code`` in ``message`` (nested dicts and lists) to ``api``."""
    if isinstance(message, dict):
        for key, value in message.items():
            if key == "error_code":
                if value:
                    api.error(value)
            elif isinstance(value, (dict, list)):
                count_error_codes(value, api)
    elif isinstance(message, list):
        for item in message:
            if isinstance(item, (dict, list)):
                count_error_codes(item, api)
