from pathlib import Path

import pytest

from rilke.errors import InvalidConfigError
from rilke.server.config import DEFAULT_LISTEN, load_config, parse_size


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rilke.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    config = load_config({}, env={})
    assert config.listen == DEFAULT_LISTEN == "127.0.0.1:9292"
    assert config.data_dir == Path("rilke-data")
    assert config.auto_create_topics is False
    assert config.node_id == 0
    assert config.port == 9292


def test_flags_beat_env_beat_file_beat_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'listen = "127.0.0.1:1111"\ndata_dir = "from-file"\nnode_id = 3\n'
        'default_partitions = 4\n[log]\n"retention.ms" = 1000\n"segment.bytes" = "1MiB"\n',
    )
    env = {
        "RILKE_LISTEN": "127.0.0.1:2222",
        "RILKE_DATA_DIR": "from-env",
        "RILKE_LOG_RETENTION_MS": "2000",
    }
    config = load_config({"listen": "127.0.0.1:3333", "node_id": None}, env=env, config_file=path)
    assert config.listen == "127.0.0.1:3333"
    assert config.sources["listen"] == "--listen"
    assert config.data_dir == Path("from-env")
    assert config.sources["data_dir"] == "RILKE_DATA_DIR"
    assert config.node_id == 3
    assert config.default_partitions == 4
    assert config.log.retention_ms == 2000
    assert config.log.segment_bytes == 1 << 20


def test_config_file_from_env(tmp_path: Path) -> None:
    path = write(tmp_path, "auto_create_topics = true\n")
    config = load_config({}, env={"RILKE_CONFIG": str(path)})
    assert config.auto_create_topics is True


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("bogus = 1\n", "bogus (from"),
        ('node_id = "x"\n', "node_id (from"),
        ("node_id = -1\n", "must be >= 0"),
        ('listen = "nohost"\n', "listen (from"),
        ('listen = "h:99999"\n', "HOST:PORT"),
        ("auto_create_topics = 3\n", "auto_create_topics"),
        ('max_request_bytes = "lots"\n', "max_request_bytes"),
        ('[log]\n"retention.mss" = 5\n', "retention.mss"),
        ('[log]\n"cleanup.policy" = "shred"\n', "cleanup.policy"),
        ("listen = \n", "not valid TOML"),
    ],
)
def test_bad_file_settings_name_the_setting_and_the_file(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InvalidConfigError) as info:
        load_config({}, env={}, config_file=path)
    assert fragment in str(info.value)
    if "TOML" not in fragment:
        assert str(path) in str(info.value)


def test_bad_env_and_flag_name_their_source(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="RILKE_NODE_ID"):
        load_config({}, env={"RILKE_NODE_ID": "seven"})
    with pytest.raises(InvalidConfigError, match="--listen"):
        load_config({"listen": "x"}, env={})
    with pytest.raises(InvalidConfigError, match="RILKE_LOG_FLUSH_MESSAGES"):
        load_config({}, env={"RILKE_LOG_FLUSH_MESSAGES": "zero"})
    with pytest.raises(InvalidConfigError, match="does not exist"):
        load_config({}, env={}, config_file=tmp_path / "missing.toml")


def test_unrelated_env_vars_are_ignored() -> None:
    config = load_config({}, env={"RILKE_BOOTSTRAP_SERVERS": "x:1"})
    assert config.listen == DEFAULT_LISTEN


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10", 10), ("1k", 1000), ("1KiB", 1024), ("64MiB", 64 << 20), ("2gb", 2 * 10**9), (5, 5)],
)
def test_sizes(text: object, expected: int) -> None:
    assert parse_size(text, "x", "test") == expected


def test_bad_size() -> None:
    with pytest.raises(InvalidConfigError, match="x \\(from test\\)"):
        parse_size("12 parsecs", "x", "test")


def test_scrub_rate_from_file_env_and_flag(tmp_path: Path) -> None:
    from rilke.server.config import DEFAULT_SCRUB_BYTES_PER_SECOND

    assert load_config({}, env={}).scrub_bytes_per_second == DEFAULT_SCRUB_BYTES_PER_SECOND > 0
    path = write(tmp_path, 'scrub_bytes_per_second = "2MiB"\n')
    assert load_config({}, env={}, config_file=path).scrub_bytes_per_second == 2 << 20
    env = {"RILKE_SCRUB_BYTES_PER_SECOND": "0"}
    assert load_config({}, env=env, config_file=path).scrub_bytes_per_second == 0
    config = load_config({"scrub_bytes_per_second": "512k"}, env=env, config_file=path)
    assert config.scrub_bytes_per_second == 512_000
    assert config.sources["scrub_bytes_per_second"] == "--scrub-bytes-per-second"
    with pytest.raises(InvalidConfigError, match=r"scrub_bytes_per_second .*RILKE_SCRUB"):
        load_config({}, env={"RILKE_SCRUB_BYTES_PER_SECOND": "fast"})
    with pytest.raises(InvalidConfigError, match="must be >= 0"):
        load_config({"scrub_bytes_per_second": "-1"}, env={})
