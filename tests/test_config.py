import pytest

from deepdiff.config import ModelConfig, TrainConfig, configs_from_flat, flat_config, load_config, save_config
from deepdiff.errors import ConfigError


def test_round_trip_through_a_file(tmp_path):
    m, t = ModelConfig(variant="aux_siamese", aux_mode="classification", dropout=0.3), TrainConfig(lr=3e-4, margin=1.0)
    path = save_config(tmp_path / "c.yaml", m, t, {"dir": "/data", "cell_a": "E123", "cell_b": "E003"})
    m2, t2, data = load_config(path)
    assert (m2, t2) == (m, t)
    assert data == {"dir": "/data", "cell_a": "E123", "cell_b": "E003"}


def test_flat_round_trip_and_number_coercion():
    flat = flat_config(ModelConfig(), TrainConfig())
    flat.update(lr=1, epochs=3.0)  # as YAML/MLflow may give them
    m, t = configs_from_flat(flat)
    assert t.lr == 1.0 and isinstance(t.lr, float) and t.epochs == 3


@pytest.mark.parametrize(
    "values, message",
    [
        ({"variant": "nope"}, "field variant: expected one of raw_d"),
        ({"aux_mode": "both"}, "field aux_mode"),
        ({"dropout": 1.5}, "field dropout"),
        ({"lr": -1.0}, "field lr: expected a number > 0"),
        ({"batch_size": 0}, "field batch_size"),
        ({"input_transform": "log"}, "field input_transform"),
        ({"learning_rate": 0.1}, "unknown field 'learning_rate'"),
    ],
)
def test_bad_values_name_the_field(values, message):
    with pytest.raises(ConfigError, match=message):
        configs_from_flat(values, source="x.yaml")


def test_bad_files_name_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  variant: raw\ntrain: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+: not valid YAML"):
        load_config(path)
    path.write_text("model:\n  varient: raw\n")
    with pytest.raises(ConfigError, match="section model: unknown field 'varient'"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_applicable_fields_follow_the_variant():
    from deepdiff.config import AUX_FIELDS, MODEL_FIELDS, SIAMESE_FIELDS, TRAIN_FIELDS, applicable_fields

    everything = set(MODEL_FIELDS + TRAIN_FIELDS)
    assert set(applicable_fields("raw_d")) == everything - set(AUX_FIELDS) - set(SIAMESE_FIELDS)
    assert set(applicable_fields("aux")) == everything - set(SIAMESE_FIELDS)
    assert set(applicable_fields("raw_aux_siamese")) == everything
