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


def test_numbers_written_as_text_are_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    # PyYAML reads 1e-3 and 5e-1 (no dot) as strings; MLflow params are all strings
    path.write_text('model:\n  variant: aux_siamese\n  dropout: "0.3"\ntrain:\n  lr: 1e-3\n  margin: 5e-1\n'
                    '  epochs: "7"\n  seed: 2.0\n')
    m, t, _ = load_config(path)
    assert (m.dropout, t.lr, t.margin, t.epochs, t.seed) == (0.3, 0.001, 0.5, 7, 2)
    assert isinstance(t.epochs, int) and isinstance(t.lr, float)


@pytest.mark.parametrize(
    "text, message",
    [
        ("train:\n  seed: 1.5\n", "field seed: expected an integer, got 1.5"),
        ("train:\n  batch_size: abc\n", "field batch_size: expected an integer, got 'abc'"),
        ('train:\n  epochs: "2.5"\n', "field epochs: expected an integer, got '2.5'"),
        ("train:\n  lr: fast\n", "field lr: expected a number, got 'fast'"),
        ("train:\n  lr: [1]\n", "field lr: expected a number, got [1]"),
        ("train:\n  lr: true\n", "field lr: expected a number, got True"),
        ("train:\n  lr: .inf\n", "field lr: expected a number > 0, got inf"),
        ("model:\n  dropout: .nan\n", "field dropout: expected a number in [0, 1), got nan"),
        ("train:\n  seed: 1e20\n", "field seed: expected an integer in [0, 2**63), got 100000000000000000000"),
        ("train:\n  seed: -1\n", "field seed: expected an integer in [0, 2**63), got -1"),
    ],
)
def test_a_non_number_names_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: {message}"


def test_a_config_path_that_is_not_a_readable_text_file(tmp_path):
    with pytest.raises(ConfigError, match=f"^{tmp_path}: is a directory, not a file; expected a config file"):
        load_config(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_bytes(b"model:\n  variant: r\xffaw\n")
    with pytest.raises(ConfigError, match=f"^{path} line 2: expected UTF-8 text \\(YAML or JSON\\), got byte 0xff$"):
        load_config(path)


def test_save_config_replaces_the_file_whole(tmp_path):
    path = save_config(tmp_path / "c.yaml", ModelConfig(), TrainConfig(lr=0.5))
    assert load_config(path)[1].lr == 0.5 and [p.name for p in tmp_path.iterdir()] == ["c.yaml"]


def test_is_int_refuses_bools_and_floats():
    from deepdiff.config import is_int

    assert is_int(3) and is_int(0) and not is_int(True) and not is_int(3.0) and not is_int("3")
    with pytest.raises(ConfigError, match="field patience: expected an integer >= 0, got True"):
        TrainConfig(patience=True)


def test_every_field_has_one_help_line_and_text_fields_their_choices():
    import dataclasses

    from deepdiff.config import AUX_MODES, CONTRASTIVE_FORMS, INPUT_TRANSFORMS, PRECISIONS
    from deepdiff.variants import VARIANTS

    for config in (ModelConfig, TrainConfig):
        for f in dataclasses.fields(config):
            assert f.metadata["help"] and "\n" not in f.metadata["help"], f.name
            assert (f.metadata["choices"] is not None) == (f.type == "str"), f.name
    choices = {f.name: f.metadata["choices"] for c in (ModelConfig, TrainConfig) for f in dataclasses.fields(c)}
    assert choices["variant"] == tuple(VARIANTS) and choices["aux_mode"] == AUX_MODES
    assert choices["input_transform"] == INPUT_TRANSFORMS and choices["contrastive_form"] == CONTRASTIVE_FORMS
    assert choices["precision"] == PRECISIONS
    with pytest.raises(ConfigError, match="field precision: expected one of auto, float32, bfloat16, float16, got 'half'"):
        TrainConfig(precision="half")
