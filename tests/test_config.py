"""load_settings: defaults < TOML file < environment, with explicit `env=` (never os.environ)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamsvc.config import DEFAULT_BOOTSTRAP, Settings, load_settings
from streamsvc.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "streamsvc.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


FULL_TOML = """
[streamsvc]
app_id = "orders-app"
bootstrap_servers = "broker-1:9092,broker-2:9092"
guarantee = "at_least_once"
commit_interval_ms = 250
batch_size = 500
static_membership = false
metrics_port = 9100
dlq_suffix = "-dlq"

[topics]
orders = "prod.orders.v2"
payments = "prod.payments"

[consumer]
"fetch.min.bytes" = 1024
"isolation.level" = "read_committed"

[producer]
"linger.ms" = 5
"enable.idempotence" = true
"""


def test_defaults_without_file_or_env() -> None:
    s = load_settings(env={})
    assert s == Settings()
    assert s.app_id == "streamsvc"
    assert s.bootstrap_servers == DEFAULT_BOOTSTRAP == "127.0.0.1:9092"
    assert s.guarantee == "exactly_once"
    assert (s.commit_interval_ms, s.batch_size, s.poll_timeout_ms) == (100, 1000, 100)
    assert s.static_membership is True
    assert s.dlq_suffix == ".dlq"
    assert (s.topics, s.consumer, s.producer) == ({}, {}, {})


def test_file_overrides_defaults(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, FULL_TOML), env={})
    assert s.app_id == "orders-app"
    assert s.bootstrap_servers == "broker-1:9092,broker-2:9092"
    assert s.guarantee == "at_least_once"
    assert s.commit_interval_ms == 250
    assert s.batch_size == 500
    assert s.static_membership is False
    assert s.metrics_port == 9100
    assert s.dlq_suffix == "-dlq"
    # untouched settings keep their defaults
    assert s.poll_timeout_ms == 100
    assert s.registry_url == ""
    assert s.group_id == ""
    assert s.effective_group_id == "orders-app"


def test_env_overrides_file(tmp_path: Path) -> None:
    env = {
        "STREAMSVC_APP_ID": "from-env",
        "STREAMSVC_BATCH_SIZE": "42",
        "STREAMSVC_GUARANTEE": "exactly_once",
        "STREAMSVC_GROUP_ID": "group-env",
    }
    s = load_settings(write(tmp_path, FULL_TOML), env=env)
    assert s.app_id == "from-env"
    assert s.batch_size == 42
    assert s.guarantee == "exactly_once"
    assert s.group_id == s.effective_group_id == "group-env"
    # settings not in env still come from the file
    assert s.commit_interval_ms == 250
    assert s.bootstrap_servers == "broker-1:9092,broker-2:9092"


def test_env_overrides_defaults_without_file() -> None:
    s = load_settings(env={"STREAMSVC_BOOTSTRAP_SERVERS": "kafka:29092", "STREAMSVC_METRICS_PORT": "8080"})
    assert s.bootstrap_servers == "kafka:29092"
    assert s.metrics_port == 8080
    assert s.app_id == "streamsvc"


def test_empty_env_value_is_ignored(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, FULL_TOML), env={"STREAMSVC_APP_ID": "", "STREAMSVC_BATCH_SIZE": ""})
    assert s.app_id == "orders-app"
    assert s.batch_size == 500


def test_unrelated_env_vars_are_ignored() -> None:
    assert load_settings(env={"APP_ID": "x", "STREAMSVC": "y", "streamsvc_app_id": "z"}) == Settings()


def test_config_path_from_env(tmp_path: Path) -> None:
    p = write(tmp_path, '[streamsvc]\napp_id = "via-env-path"\n')
    assert load_settings(env={"STREAMSVC_CONFIG": str(p)}).app_id == "via-env-path"


def test_explicit_path_wins_over_env_config_path(tmp_path: Path) -> None:
    explicit = write(tmp_path, '[streamsvc]\napp_id = "explicit"\n', "a.toml")
    other = write(tmp_path, '[streamsvc]\napp_id = "other"\n', "b.toml")
    assert load_settings(explicit, env={"STREAMSVC_CONFIG": str(other)}).app_id == "explicit"
    assert load_settings(str(explicit), env={}).app_id == "explicit"


# ---------------------------------------------------------------------------------------------- topics


def test_topics_table_and_env_topic_mapping(tmp_path: Path) -> None:
    env = {"STREAMSVC_TOPIC_ORDERS": "test.orders.123", "STREAMSVC_TOPIC_ORDERS_CLEAN": "test.clean.123"}
    s = load_settings(write(tmp_path, FULL_TOML), env=env)
    assert s.topics == {
        "orders": "test.orders.123",  # env wins over the file
        "payments": "prod.payments",  # file only
        "orders_clean": "test.clean.123",  # env only, name lower-cased
    }
    assert s.topic("orders") == "test.orders.123"
    assert s.topic("orders_clean") == "test.clean.123"
    assert s.topic("unmapped") == "unmapped"


def test_env_topic_mapping_without_file() -> None:
    s = load_settings(env={"STREAMSVC_TOPIC_Events": "real-events"})
    assert s.topics == {"events": "real-events"}


def test_topic_values_are_strings(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "[topics]\nnumbers = 42\n"), env={})
    assert s.topics == {"numbers": "42"}


# ----------------------------------------------------------------------------------------- passthrough


def test_consumer_and_producer_tables_pass_through_with_types(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, FULL_TOML), env={})
    assert s.consumer == {"fetch.min.bytes": 1024, "isolation.level": "read_committed"}
    assert s.producer == {"linger.ms": 5, "enable.idempotence": True}


def test_env_does_not_touch_passthrough_tables(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, FULL_TOML), env={"STREAMSVC_CONSUMER": "x", "STREAMSVC_PRODUCER": "y"})
    assert s.consumer == {"fetch.min.bytes": 1024, "isolation.level": "read_committed"}
    assert s.producer == {"linger.ms": 5, "enable.idempotence": True}


# ------------------------------------------------------------------------------------------ coercion


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" True ", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("off", False),
    ],
)
def test_bool_coercion_from_env(raw: str, expected: bool) -> None:
    s = load_settings(env={"STREAMSVC_STATIC_MEMBERSHIP": raw})
    assert s.static_membership is expected


@pytest.mark.parametrize(("toml_value", "expected"), [("true", True), ("false", False), ('"off"', False)])
def test_bool_coercion_from_file(tmp_path: Path, toml_value: str, expected: bool) -> None:
    p = write(tmp_path, f"[streamsvc]\nstatic_membership = {toml_value}\n")
    assert load_settings(p, env={}).static_membership is expected


def test_int_coercion_from_env_and_file_strings(tmp_path: Path) -> None:
    p = write(tmp_path, '[streamsvc]\nbatch_size = "64"\n')
    s = load_settings(p, env={"STREAMSVC_COMMIT_INTERVAL_MS": "1500"})
    assert s.batch_size == 64
    assert s.commit_interval_ms == 1500


def test_bad_int_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=re.escape("setting 'batch_size': cannot read 'lots' as int")):
        load_settings(env={"STREAMSVC_BATCH_SIZE": "lots"})


def test_bad_int_in_file_is_a_config_error(tmp_path: Path) -> None:
    p = write(tmp_path, '[streamsvc]\nmetrics_port = "http"\n')
    with pytest.raises(ConfigError, match=re.escape("setting 'metrics_port': cannot read 'http' as int")):
        load_settings(p, env={})


# ------------------------------------------------------------------------------------------- errors


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    p = write(tmp_path, '[streamsvc]\napp_id = "a"\nbootstrap = "x:9092"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(p, env={})
    msg = str(info.value)
    assert msg.startswith(f"{p}: unknown setting [streamsvc].bootstrap; known: [")
    assert "'bootstrap_servers'" in msg
    # the passthrough tables are not scalar settings
    assert "'topics'" not in msg and "'consumer'" not in msg


def test_table_name_under_streamsvc_is_unknown(tmp_path: Path) -> None:
    p = write(tmp_path, '[streamsvc]\ntopics = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown setting \[streamsvc\]\.topics"):
        load_settings(p, env={})


def test_bad_guarantee_from_env() -> None:
    with pytest.raises(
        ConfigError,
        match=re.escape("guarantee must be one of ('exactly_once', 'at_least_once'), got 'exactly-once'"),
    ):
        load_settings(env={"STREAMSVC_GUARANTEE": "exactly-once"})


def test_bad_guarantee_from_file(tmp_path: Path) -> None:
    p = write(tmp_path, '[streamsvc]\nguarantee = "at_most_once"\n')
    with pytest.raises(ConfigError, match="got 'at_most_once'"):
        load_settings(p, env={})


def test_env_can_fix_bad_guarantee_in_file(tmp_path: Path) -> None:
    p = write(tmp_path, '[streamsvc]\nguarantee = "at_most_once"\n')
    assert load_settings(p, env={"STREAMSVC_GUARANTEE": "at_least_once"}).guarantee == "at_least_once"


@pytest.mark.parametrize("var", ["STREAMSVC_BATCH_SIZE", "STREAMSVC_COMMIT_INTERVAL_MS"])
@pytest.mark.parametrize("raw", ["0", "-5"])
def test_non_positive_batch_or_interval_is_an_error(var: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^commit_interval_ms and batch_size must be positive$"):
        load_settings(env={var: raw})


def test_missing_file_error_message(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    expected = f"config file {missing} does not exist (given by --config or STREAMSVC_CONFIG)"
    with pytest.raises(ConfigError) as info:
        load_settings(missing, env={})
    assert str(info.value) == expected
    with pytest.raises(ConfigError) as info:
        load_settings(env={"STREAMSVC_CONFIG": str(missing)})
    assert str(info.value) == expected


def test_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path, env={})


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    p = write(tmp_path, "[streamsvc\napp_id = \n")
    with pytest.raises(ConfigError, match=rf"^config file {re.escape(str(p))} is not valid TOML: "):
        load_settings(p, env={})


# ------------------------------------------------------------------------------------ Settings helpers


def test_with_overrides_returns_a_new_settings() -> None:
    base = Settings()
    changed = base.with_overrides(app_id="other", batch_size=7)
    assert (changed.app_id, changed.batch_size) == ("other", 7)
    assert (base.app_id, base.batch_size) == ("streamsvc", 1000)


def test_effective_instance_id_prefers_explicit_setting() -> None:
    assert Settings(instance_id="pod-7").effective_instance_id == "pod-7"


@pytest.mark.parametrize("word", ["ture", "2", "enabled"])
def test_unrecognised_bool_words_are_errors(word: str) -> None:
    with pytest.raises(ConfigError, match="static_membership"):
        load_settings(env={"STREAMSVC_STATIC_MEMBERSHIP": word})


@pytest.mark.parametrize("raw", ["1.9", "true"])
def test_non_integer_values_for_int_settings_are_errors(tmp_path: Path, raw: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[streamsvc]\nbatch_size = {raw}\n")
    with pytest.raises(ConfigError, match="batch_size"):
        load_settings(cfg, env={})
