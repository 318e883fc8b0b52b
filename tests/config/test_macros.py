"""Macros: declaration order, model overrides in place, typing, reserved and unknown names."""

from __future__ import annotations

from tests.config.helpers import load, problems


def test_macros_may_use_earlier_macros_and_model_macros_override_globals() -> None:
    config = load(
        """
        macros:
          bin: /opt/llama-server
          ctx: 4096
          args: -c ${ctx} --port ${PORT}
        models:
          small:
            cmd: ${bin} ${args}
          big:
            macros:
              ctx: 32768
              extra: --flash-attn ${ctx}
            cmd: ${bin} ${args} ${extra}
        """
    )
    assert config.models["small"].argv == ("/opt/llama-server", "-c", "4096", "--port", "5801")
    # `args` is global but sees the model's `ctx`: the override takes the global's place.
    assert config.models["big"].argv == (
        "/opt/llama-server",
        *("-c", "32768", "--port", "5800", "--flash-attn", "32768"),
    )


def test_macros_referencing_a_later_macro_is_a_problem() -> None:
    found = problems(
        """
        macros:
          args: -c ${ctx}
          ctx: 4096
        models:
          a:
            cmd: server ${args} --port ${PORT}
        """
    )
    assert found == [
        "macros.args (line 3): macro 'args' uses '${ctx}', which is declared after it; "
        "a macro may only use macros declared before it",
        "models.a.cmd (line 7): '${ctx}' is left unexpanded: a macro declared before 'ctx' uses it",
    ]


def test_macros_model_override_cannot_use_a_new_model_macro() -> None:
    found = problems(
        """
        macros:
          flags: -c 1
        models:
          a:
            macros:
              n: 2
              flags: -c ${n}
            cmd: server ${flags} --port ${PORT}
        """
    )
    assert found[0] == (
        "models.a.macros.flags (line 8): macro 'flags' uses '${n}', which is declared after "
        "it; a macro may only use macros declared before it (a model macro that overrides a "
        "global one takes the global's place)"
    )


def test_macros_self_reference_is_a_problem() -> None:
    found = problems(
        """
        macros:
          loop: a ${loop}
        models: {}
        """
    )
    assert found == ["macros.loop (line 3): macro 'loop' refers to itself"]


def test_macros_reserved_and_invalid_names_are_problems() -> None:
    found = problems(
        """
        macros:
          PORT: 1
          MODEL_ID: x
          "bad name": 1
          ok: 1
        models:
          a:
            cmd: server --port ${PORT}
            macros:
              PID: 3
              GPUS: "0"
        """
    )
    reserved = "is reserved (swapd sets PID, PORT, MODEL_ID and GPUS itself)"
    assert found == [
        f"macros (line 3): macro name 'PORT' {reserved}",
        f"macros (line 4): macro name 'MODEL_ID' {reserved}",
        "macros (line 5): invalid name 'bad name': use only letters, digits, '_' and '-'",
        f"models.a.macros (line 11): macro name 'PID' {reserved}",
        f"models.a.macros (line 12): macro name 'GPUS' {reserved}",
    ]


def test_macros_names_must_be_shorter_than_64_characters() -> None:
    found = problems(f"macros:\n  {'m' * 64}: 1\nmodels: {{}}\n")
    assert found == [
        f"macros (line 2): macro name '{'m' * 20}…' is too long (at most 63 characters)"
    ]
    assert load(f"macros:\n  {'m' * 63}: 1\nmodels: {{}}\n").models == {}


def test_macros_values_must_be_scalars() -> None:
    found = problems(
        """
        macros:
          list: [1, 2]
        models: {}
        """
    )
    assert found == ["macros.list (line 3): expected a string or a number or a boolean, got a list"]


def test_macros_unknown_reference_is_reported_per_field_with_did_you_mean() -> None:
    found = problems(
        """
        macros:
          context: 4096
        models:
          a:
            cmd: server --port ${PORT} -c ${contxt}
            cmdStop: kill ${nope}
            proxy: http://127.0.0.1:${PORT}${path}
            checkEndpoint: ${health}
            name: ${who}
            description: about ${what}
            metadata:
              deep: {list: ["${missing}"]}
            filters:
              stripParams: ${strip}
              setParams:
                x: ${setme}
        """
    )
    assert found == [
        "models.a.cmd (line 6): unknown macro '${contxt}' (did you mean 'context'?)",
        "models.a.cmdStop (line 7): unknown macro '${nope}'",
        "models.a.proxy (line 8): unknown macro '${path}'",
        "models.a.checkEndpoint (line 9): unknown macro '${health}'",
        "models.a.name (line 10): unknown macro '${who}'",
        "models.a.description (line 11): unknown macro '${what}'",
        "models.a.metadata.deep.list[0] (line 13): unknown macro '${missing}'",
        "models.a.filters.stripParams (line 15): unknown macro '${strip}'",
        "models.a.filters.setParams.x (line 17): unknown macro '${setme}'",
    ]


def test_macros_whole_value_keeps_type_embedded_value_is_stringified() -> None:
    config = load(
        """
        macros:
          ctx: 8192
          temp: 0.5
          fast: true
          label: small
        models:
          a:
            cmd: server --port ${PORT} -c ${ctx} --temp ${temp} --fast ${fast}
            ttl: ${ctx}
            unlisted: ${fast}
            metadata:
              ctx: ${ctx}
              temp: ${temp}
              fast: ${fast}
              text: "${label} with ${ctx} at ${temp}, fast=${fast}"
              nested:
                - ${ctx}
            filters:
              setParams:
                temperature: ${temp}
        """
    )
    model = config.models["a"]
    assert model.argv[-6:] == ("-c", "8192", "--temp", "0.5", "--fast", "true")
    assert model.ttl_s == 8192.0
    assert model.unlisted is True
    assert model.metadata == {
        "ctx": 8192,
        "temp": 0.5,
        "fast": True,
        "text": "small with 8192 at 0.5, fast=true",
        "nested": [8192],
    }
    assert model.filters.set_params == {"temperature": 0.5}


def test_macros_typed_field_with_wrong_macro_type_is_a_problem() -> None:
    found = problems(
        """
        macros:
          t: soon
        models:
          a:
            cmd: server --port ${PORT}
            ttl: ${t}
            concurrencyLimit: ${undefined}
        """
    )
    assert found == [
        "models.a.ttl (line 7): expected an integer, got 'soon' after macro expansion",
        "models.a.concurrencyLimit (line 8): unknown macro '${undefined}'",
    ]


def test_macros_global_macros_apply_to_top_level_values() -> None:
    config = load(
        """
        macros:
          base: 7100
        startPort: ${base}
        models:
          a:
            cmd: server --port ${PORT}
        """
    )
    assert config.start_port == 7100
    assert config.models["a"].port == 7100


def test_macros_model_id_is_the_model_id() -> None:
    config = load(
        """
        macros:
          alias-flag: --alias ${MODEL_ID}
        models:
          qwen-7b:
            cmd: server --port ${PORT} ${alias-flag}
            name: ${MODEL_ID} (local)
            aliases: ["${MODEL_ID}-fast"]
        """
    )
    model = config.models["qwen-7b"]
    assert model.argv[-2:] == ("--alias", "qwen-7b")
    assert model.name == "qwen-7b (local)"
    assert model.aliases == ("qwen-7b-fast",)


def test_macros_pid_is_only_allowed_in_cmd_stop() -> None:
    found = problems(
        """
        models:
          a:
            cmd: server --port ${PORT} --parent ${PID}
            cmdStop: kill -TERM ${PID}
            name: pid ${PID}
        """
    )
    assert found == [
        "models.a.cmd (line 4): '${PID}' is only available in cmdStop",
        "models.a.name (line 6): '${PID}' is only available in cmdStop",
    ]


def test_macros_in_commented_cmd_lines_never_expand() -> None:
    config = load(
        """
        models:
          a:
            cmd: |
              server --port ${PORT}
              # --draft ${not-defined-anywhere}
        """
    )
    assert config.models["a"].argv == ("server", "--port", "5800")


def test_macros_unknown_upper_case_name_hints_at_env_syntax() -> None:
    found = problems("models:\n  a:\n    cmd: server --port ${PORT} --dir ${HOME}\n")
    assert found == [
        "models.a.cmd (line 3): unknown macro '${HOME}' (for an environment variable write "
        "'${env.HOME}')"
    ]
