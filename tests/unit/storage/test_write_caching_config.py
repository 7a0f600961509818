"""The write.caching topic config: true/false, round-trips, refuses anything else."""

import pytest

from rilke.errors import InvalidConfigError
from rilke.storage.config import LogConfig


def test_write_caching_parses_and_round_trips() -> None:
    assert LogConfig().write_caching is False
    assert LogConfig().to_topic_configs()["write.caching"] == "false"
    on = LogConfig.from_topic_configs({"write.caching": " True "})
    assert on.write_caching is True
    assert on.to_topic_configs()["write.caching"] == "true"
    assert LogConfig.from_topic_configs(on.to_topic_configs()) == on
    with pytest.raises(InvalidConfigError, match=r"write.caching"):
        LogConfig.from_topic_configs({"write.caching": "1"})
