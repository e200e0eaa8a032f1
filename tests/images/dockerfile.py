"""The runtime settings a Dockerfile's final stage declares: ENTRYPOINT, USER, EXPOSE, ENV, LABEL.

tests/images/build takes them from the Dockerfile (the project's own, or upstream's for pause), so
an image built offline and one built by `docker build` cannot disagree about how they run. Only
the forms the Dockerfiles here use are understood; anything else in the final stage is an error
rather than a silently different image.
"""

import json
import re
import shlex
from dataclasses import dataclass, field

# Instructions of a final stage that change no runtime setting, or whose effect is the files.
IGNORED = {"COPY", "ADD", "ARG"}
# BuildKit's PATH for an image that sets none, as registry.k8s.io/pause's config has it.
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass
class Settings:
    entrypoint: list = field(default_factory=list)
    user: str = ""
    ports: list = field(default_factory=list)
    env: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)


def instructions(text):
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    logical, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):  # also inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    for line in logical:
        word, _, rest = line.partition(" ")
        yield word.upper(), rest.strip()


def final_stage(path, build_args):
    """The settings of the last stage of Dockerfile `path`; `build_args` fill ${NAME} in labels."""
    with open(path, encoding="utf-8") as f:
        stage = []
        for word, rest in instructions(f.read()):
            stage = [] if word == "FROM" else stage + [(word, rest)]
    values = dict(build_args)
    settings = Settings()
    for word, rest in stage:
        if word == "ARG":
            name, _, default = rest.partition("=")
            values.setdefault(name, default)
        if word == "ENTRYPOINT":
            settings.entrypoint = json.loads(rest)  # the exec form only: no shell in these images
        elif word == "USER":
            settings.user = rest
        elif word == "EXPOSE":
            settings.ports += [p if "/" in p else f"{p}/tcp" for p in rest.split()]
        elif word in ("ENV", "LABEL"):
            for pair in shlex.split(rest):
                name, sep, value = pair.partition("=")
                if not sep:
                    raise SystemExit(f"{path}: write {word} as NAME=value: {rest}")
                value = substitute(value, values, path)
                if word == "ENV":
                    settings.env.append(f"{name}={value}")
                else:
                    settings.labels[name] = value
        elif word not in IGNORED:
            raise SystemExit(f"{path}: {word} in the final stage is not understood here")
    if not any(e.startswith("PATH=") for e in settings.env):
        settings.env.insert(0, DEFAULT_PATH)
    return settings


def substitute(value, values, path):
    def one(match):
        name = match.group(1) or match.group(2)
        if not values.get(name):
            raise SystemExit(f"{path}: no value for ${name} (pass it as a build argument)")
        return values[name]

    return VARIABLE.sub(one, value)
