"""GPU keys: a model's gpus, gpuSplit, CUDA_VISIBLE_DEVICES in env, ${GPUS}, and the top-level
VRAM settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swapd.config.load import load_config, load_config_text
from swapd.config.macros import GPUS_REF
from swapd.config.model import DEFAULT_VRAM_HEADROOM, GpuSettings
from swapd.config.sizes import GIB, MIB
from tests.config.helpers import load, problems

# -- gpus and gpuSplit ---------------------------------------------------------------------


def test_gpus_defaults_to_none_and_split_false() -> None:
    model = load("models:\n  a:\n    cmd: server --port ${PORT}\n").models["a"]
    assert (model.gpus, model.gpu_split, model.vram_bytes) == (None, False, None)


def test_gpus_list_integer_and_string_forms_keep_the_written_order() -> None:
    config = load(
        """
        macros:
          pair: "2,0"
          one: 3
        models:
          list:
            cmd: server --port ${PORT}
            gpus: [1, 0]
          int:
            cmd: server --port ${PORT}
            gpus: 2
          zero:
            cmd: server --port ${PORT}
            gpus: 0
          string:
            cmd: server --port ${PORT}
            gpus: " 3, 1 ,2"
          unquoted:
            cmd: server --port ${PORT}
            gpus: 0,1
          macro-string:
            cmd: server --port ${PORT}
            gpus: ${pair}
          macro-int:
            cmd: server --port ${PORT}
            gpus: ${one}
          macro-items:
            cmd: server --port ${PORT}
            gpus: ["${one}", 0]
        """
    )
    gpus = {mid: m.gpus for mid, m in config.models.items()}
    assert gpus == {
        "list": (1, 0),
        "int": (2,),
        "zero": (0,),
        "string": (3, 1, 2),
        "unquoted": (0, 1),
        "macro-string": (2, 0),
        "macro-int": (3,),
        "macro-items": (3, 0),
    }
    assert not any(m.gpu_split for m in config.models.values())


def test_gpu_split_is_read() -> None:
    config = load(
        """
        macros:
          split: true
        models:
          a:
            cmd: server --port ${PORT}
            gpus: [0, 1]
            gpuSplit: true
          b:
            cmd: server --port ${PORT}
            gpus: [0, 1]
            gpuSplit: ${split}
          c:
            cmd: server --port ${PORT}
            gpus: [0, 1]
            gpuSplit: false
        """
    )
    assert [m.gpu_split for m in config.models.values()] == [True, True, False]
    assert config.warnings == ()


def test_gpus_problems_name_the_key_path() -> None:
    found = problems(
        """
        macros:
          neg: -2
          dup: "1,1"
          f: 0.5
          word: all
        models:
          dup-list:
            cmd: server --port ${PORT}
            gpus: [0, 1, 0]
          dup-string:
            cmd: server --port ${PORT}
            gpus: "1, 1"
          negative:
            cmd: server --port ${PORT}
            gpus: -1
          negative-item:
            cmd: server --port ${PORT}
            gpus: [0, -1]
          negative-string:
            cmd: server --port ${PORT}
            gpus: "0,-1"
          empty-list:
            cmd: server --port ${PORT}
            gpus: []
          empty-string:
            cmd: server --port ${PORT}
            gpus: ""
          words:
            cmd: server --port ${PORT}
            gpus: all
          bool:
            cmd: server --port ${PORT}
            gpus: true
          float:
            cmd: server --port ${PORT}
            gpus: 1.5
          string-item:
            cmd: server --port ${PORT}
            gpus: ["0"]
          mapping:
            cmd: server --port ${PORT}
            gpus: {a: 1}
          macro-negative:
            cmd: server --port ${PORT}
            gpus: ${neg}
          macro-dup:
            cmd: server --port ${PORT}
            gpus: ${dup}
          macro-float:
            cmd: server --port ${PORT}
            gpus: ["${f}"]
          unknown-macro:
            cmd: server --port ${PORT}
            gpus: ${nope}
          split:
            cmd: server --port ${PORT}
            gpus: [0]
            gpuSplit: "yes"
          macro-words:
            cmd: server --port ${PORT}
            gpus: ${word}
        """
    )
    not_indices = 'is not a list of GPU indices: expected e.g. "0,1"'
    assert found == [
        "models.dup-list.gpus (line 10): 0 is listed twice",
        "models.dup-string.gpus (line 13): GPU 1 is listed twice",
        "models.negative.gpus (line 16): must be at least 0, got -1",
        "models.negative-item.gpus[1] (line 19): must be at least 0, got -1",
        f'models.negative-string.gpus (line 22): "0,-1" {not_indices}',
        "models.empty-list.gpus (line 25): must not be empty",
        f'models.empty-string.gpus (line 28): "" {not_indices}',
        f'models.words.gpus (line 31): "all" {not_indices}',
        "models.bool.gpus (line 34): expected a list or an integer or a string, got a boolean "
        "(true)",
        "models.float.gpus (line 37): expected a list or an integer or a string, got a number "
        "(1.5)",
        'models.string-item.gpus[0] (line 40): expected an integer, got a string ("0")',
        "models.mapping.gpus (line 43): expected a list or an integer or a string, got a mapping",
        "models.macro-negative.gpus (line 46): must be at least 0, got -2",
        "models.macro-dup.gpus (line 49): GPU 1 is listed twice",
        "models.macro-float.gpus[0] (line 52): expected a GPU index, got 0.5 after macro expansion",
        "models.unknown-macro.gpus (line 55): unknown macro '${nope}'",
        'models.split.gpuSplit (line 59): expected a boolean, got a string ("yes")',
        "models.macro-words.gpus (line 62): expected GPU indices separated by commas, e.g. "
        "'0,1', got 'all'",
    ]


def test_gpus_misspelt_gets_did_you_mean() -> None:
    found = problems("models:\n  a:\n    cmd: server --port ${PORT}\n    gpu: [0]\n    Vram: 1\n")
    assert found == [
        "models.a (line 4): unknown key 'gpu' (did you mean 'gpus'?)",
        "models.a (line 5): unknown key 'Vram' (did you mean 'vram'?)",
    ]


def test_gpu_split_without_gpus_is_warned_about() -> None:
    config = load("models:\n  a:\n    cmd: server --port ${PORT}\n    gpuSplit: false\n")
    assert config.models["a"].gpus is None
    assert config.warnings == (
        "models.a.gpuSplit (line 4): has no effect without gpus: a model without gpus sees "
        "every GPU and llama.cpp splits it across them",
    )


# -- CUDA_VISIBLE_DEVICES in env -----------------------------------------------------------


def test_cuda_visible_devices_in_env_becomes_split_gpus() -> None:
    config = load(
        """
        models:
          pair:
            cmd: server --port ${PORT}
            env: ["CUDA_VISIBLE_DEVICES=1,0", "OTHER=x"]
          one:
            cmd: server --port ${PORT}
            env: ["CUDA_VISIBLE_DEVICES=2"]
          repeated:
            cmd: server --port ${PORT}
            env: ["CUDA_VISIBLE_DEVICES=0,0,1"]
          explicit-split:
            cmd: server --port ${PORT}
            env: ["CUDA_VISIBLE_DEVICES=0,1"]
            gpuSplit: true
        """
    )
    models = config.models
    assert (models["pair"].gpus, models["pair"].gpu_split) == ((1, 0), True)
    assert dict(models["pair"].env) == {"CUDA_VISIBLE_DEVICES": "1,0", "OTHER": "x"}
    assert (models["one"].gpus, models["one"].gpu_split) == ((2,), True)
    assert models["repeated"].gpus == (0, 1)
    assert (models["explicit-split"].gpus, models["explicit-split"].gpu_split) == ((0, 1), True)
    assert config.warnings == ()


@pytest.mark.parametrize(
    "value",
    ["GPU-4b2c1f3e-aaaa-bbbb-cccc-000000000000", "", "0, 1", "-1", "0,", "MIG-1/2/3", "all"],
)
def test_cuda_visible_devices_that_is_not_plain_indices_is_left_alone(value: str) -> None:
    config = load(
        "models:\n  a:\n    cmd: server --port ${PORT}\n"
        f'    env: ["CUDA_VISIBLE_DEVICES={value}"]\n'
    )
    model = config.models["a"]
    assert (model.gpus, model.gpu_split) == (None, False)
    assert dict(model.env) == {"CUDA_VISIBLE_DEVICES": value}


def test_cuda_visible_devices_beside_gpus_is_a_problem() -> None:
    found = problems(
        """
        models:
          a:
            cmd: server --port ${PORT}
            gpus: [0]
            env: ["CUDA_VISIBLE_DEVICES=0"]
          uuid:
            cmd: server --port ${PORT}
            gpus: 1
            env:
              - X=1
              - CUDA_VISIBLE_DEVICES=GPU-4b2c1f3e
        """
    )
    message = (
        "sets CUDA_VISIBLE_DEVICES, and gpus is set: swapd sets CUDA_VISIBLE_DEVICES from "
        "gpus; remove one"
    )
    assert found == [f"models.a.env (line 6): {message}", f"models.uuid.env (line 10): {message}"]


def test_cuda_visible_devices_with_gpu_split_false_is_a_problem() -> None:
    found = problems(
        """
        models:
          a:
            cmd: server --port ${PORT}
            env: ["CUDA_VISIBLE_DEVICES=0,1"]
            gpuSplit: false
        """
    )
    assert found == [
        "models.a.gpuSplit (line 6): false needs gpus: with CUDA_VISIBLE_DEVICES in env the "
        "model sees all of GPUs 0,1; move them to gpus to place it on one of them"
    ]


# -- ${GPUS} ---------------------------------------------------------------------------------


def test_gpus_macro_passes_through_cmd_and_env() -> None:
    config = load(
        """
        macros:
          devices: "--device-list ${GPUS}"
        models:
          a:
            cmd: server --port ${PORT} ${devices} --tag gpu${GPUS}
            gpus: [0, 1]
            env: ["SHOWN=${GPUS}", "PLAIN=1"]
          from-env:
            cmd: wrapper --gpus ${GPUS} -- server --port ${PORT}
            env: ["CUDA_VISIBLE_DEVICES=1"]
        """
    )
    a = config.models["a"]
    assert a.argv[-4:] == ("--device-list", GPUS_REF, "--tag", "gpu" + GPUS_REF)
    assert GPUS_REF in a.cmd
    assert dict(a.env) == {"SHOWN": GPUS_REF, "PLAIN": "1"}
    assert config.models["from-env"].argv[:3] == ("wrapper", "--gpus", GPUS_REF)


def test_gpus_macro_needs_gpus_and_is_only_for_cmd_and_env() -> None:
    found = problems(
        """
        macros:
          flags: --main-gpu ${GPUS}
        models:
          a:
            cmd: server --port ${PORT} ${flags}
            env: ["X=${GPUS}", "Y=${other}"]
          uuid:
            cmd: server --port ${PORT} ${GPUS}
            env: ["CUDA_VISIBLE_DEVICES=GPU-4b2c1f3e"]
          elsewhere:
            cmd: server --port ${PORT}
            cmdStop: kill ${PID} ${GPUS}
            proxy: http://127.0.0.1:${PORT}/${GPUS}
            name: on ${GPUS}
            gpus: 0
          typo:
            cmd: server --port ${PORT} ${GPU}
            gpus: 0
        """
    )
    no_gpus = "uses '${GPUS}', but the model has no gpus: set gpus to the GPUs it may use"
    elsewhere = "'${GPUS}' is only available in a model's cmd and env"
    assert found == [
        f"models.a.cmd (line 6): {no_gpus}",
        f"models.a.env[0] (line 7): {no_gpus}",
        f"models.uuid.cmd (line 9): {no_gpus}",
        f"models.elsewhere.cmdStop (line 13): {elsewhere}",
        f"models.elsewhere.proxy (line 14): {elsewhere}",
        f"models.elsewhere.name (line 15): {elsewhere}",
        "models.typo.cmd (line 18): unknown macro '${GPU}' (did you mean 'GPUS'?)",
    ]


def test_gpus_macro_beside_a_broken_gpus_is_reported_once() -> None:
    found = problems("models:\n  a:\n    cmd: server --port ${PORT} ${GPUS}\n    gpus: [-1]\n")
    assert found == ["models.a.gpus[0] (line 4): must be at least 0, got -1"]


def test_gpus_macro_at_top_level_is_a_problem() -> None:
    assert problems("apiKeys: ['k${GPUS}']\nmodels: {}\n") == [
        "apiKeys[0] (line 1): '${GPUS}' is only available in a model's cmd and env"
    ]


# -- top-level settings --------------------------------------------------------------------


def test_gpu_settings_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    gpu = load("models: {}\n").gpu
    assert gpu == GpuSettings(
        planning="auto",
        headroom_bytes=512 * MIB,
        state_file=tmp_path / "state" / "swapd" / "vram.json",
        poll_interval_s=1.0,
        release_timeout_s=10.0,
    )
    assert DEFAULT_VRAM_HEADROOM == 512 * MIB
    assert GpuSettings().state_file is None, "hand-built settings persist nothing"


@pytest.mark.parametrize("xdg", [None, "", "relative/state"])
def test_state_file_default_without_a_usable_xdg_state_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, xdg: str | None
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    if xdg is None:
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_STATE_HOME", xdg)
    expected = tmp_path / ".local" / "state" / "swapd" / "vram.json"
    assert load("models: {}\n").gpu.state_file == expected


def test_gpu_settings_are_read() -> None:
    config = load(
        """
        vramPlanning: "off"
        vramHeadroom: 1.5GiB
        gpuPollInterval: 0.25
        vramReleaseTimeout: 0
        models: {}
        """
    )
    assert config.gpu.planning == "off"
    assert config.gpu.headroom_bytes == GIB + GIB // 2
    assert config.gpu.poll_interval_s == 0.25
    assert config.gpu.release_timeout_s == 0.0


@pytest.mark.parametrize(
    ("written", "planning"),
    [
        ("auto", "auto"),
        ("on", "on"),
        ('"on"', "on"),
        ("true", "on"),
        ('"off"', "off"),
        ("false", "off"),
    ],
)
def test_vram_planning_values(written: str, planning: str) -> None:
    assert load(f"vramPlanning: {written}\nmodels: {{}}\n").gpu.planning == planning


def test_vram_headroom_integer_is_mib_and_zero_is_allowed() -> None:
    assert load("vramHeadroom: 1024\nmodels: {}\n").gpu.headroom_bytes == GIB
    assert load("vramHeadroom: 0\nmodels: {}\n").gpu.headroom_bytes == 0
    assert load("vramHeadroom: 0 GiB\nmodels: {}\n").gpu.headroom_bytes == 0


def test_gpu_settings_from_global_macros() -> None:
    config = load(
        """
        macros:
          poll: 2
          room: 256MiB
          state: /var/lib/swapd
        vramHeadroom: ${room}
        gpuPollInterval: ${poll}
        vramReleaseTimeout: ${poll}
        vramStateFile: ${state}/vram.json
        models: {}
        """
    )
    assert config.gpu.headroom_bytes == 256 * MIB
    assert (config.gpu.poll_interval_s, config.gpu.release_timeout_s) == (2.0, 2.0)
    assert config.gpu.state_file == Path("/var/lib/swapd/vram.json")


def test_gpu_settings_problems_name_the_key_path() -> None:
    found = problems(
        """
        macros:
          word: soon
        vramPlanning: maybe
        vramHeadroom: -1
        gpuPollInterval: 0.05
        vramReleaseTimeout: -1
        vramStateFile: 3
        models: {}
        """
    )
    assert found == [
        'vramPlanning (line 4): "maybe" is not one of "auto", "on", "off", true, false',
        "vramHeadroom (line 5): must be at least 0, got -1",
        "gpuPollInterval (line 6): must be at least 0.1, got 0.05",
        "vramReleaseTimeout (line 7): must be at least 0, got -1",
        "vramStateFile (line 8): expected a string, got an integer (3)",
    ]
    found = problems(
        """
        macros:
          word: soon
        vramHeadroom: lots
        gpuPollInterval: ${word}
        vramReleaseTimeout: ${nope}
        vramStateFile: ${dir}/vram.json
        vramPlaning: on
        models: {}
        """
    )
    assert found == [
        'vramHeadroom (line 4): "lots" is not a size: expected a number and a unit, e.g. '
        '"8GiB" or "7.5 GB" (a number without quotes or unit is MiB)',
        "gpuPollInterval (line 5): expected a number, got 'soon' after macro expansion",
        "vramReleaseTimeout (line 6): unknown macro '${nope}'",
        "vramStateFile (line 7): unknown macro '${dir}'",
        "(top level) (line 8): unknown key 'vramPlaning' (did you mean 'vramPlanning'?)",
    ]


def test_state_file_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "swapd.yaml"
    path.write_text("vramStateFile: state/vram.json\nmodels: {}\n")
    assert load_config(path).gpu.state_file == tmp_path / "conf" / "state" / "vram.json"
    config = load_config_text(
        "vramStateFile: ../vram.json\nmodels: {}\n", source="swapd.yaml", base_dir=tmp_path
    )
    assert config.gpu.state_file == tmp_path / ".." / "vram.json"


def test_state_file_relative_without_a_file_is_relative_to_the_working_directory() -> None:
    config = load_config_text("vramStateFile: vram.json\nmodels: {}\n")
    assert config.gpu.state_file == Path(os.getcwd()) / "vram.json"


def test_state_file_absolute_home_and_disabled(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load("vramStateFile: /srv/vram.json\nmodels: {}\n").gpu.state_file == Path(
        "/srv/vram.json"
    )
    assert load("vramStateFile: ~/vram.json\nmodels: {}\n").gpu.state_file == tmp_path / "vram.json"
    assert load('vramStateFile: ""\nmodels: {}\n').gpu.state_file is None
