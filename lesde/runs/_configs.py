"""`lesde configs`: the configs installed with lesde, listed and copied out."""

import os
import shutil
import sys
from importlib import resources
from pathlib import Path

import yaml


def _folder():
    return resources.files("lesde") / "configs"


def _command(data) -> str:
    """The command that runs a config, from its top-level keys."""
    if not isinstance(data, dict):
        return "?"
    if "sweep" in data:
        return "sweep"
    if "boundary" in data:
        return "boundary"
    if "experiment" in data:
        return "train"
    if "loss" in data and "optimizer" in data:
        return "fit"
    kind = (data.get("model") or {}).get("kind")
    return "spring" if kind in ("spring_map", "spring_sde") else "simulate"


def _summary(text: str) -> str:
    """The first sentence of a config's leading comment."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    words = " ".join(lines)
    end = words.find(". ")
    words = words if end < 0 else words[: end + 1]
    return words if len(words) <= 90 else words[:87].rsplit(" ", 1)[0] + " ..."


def installed_configs() -> dict[str, dict[str, str]]:
    """The configs installed with lesde: name -> {"command": the `lesde` command that
    runs it, "summary": the first sentence of its comment, "text": the YAML}."""
    out = {}
    for entry in sorted(_folder().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            text = entry.read_text()
            out[entry.name[: -len(".yaml")]] = {
                "command": _command(yaml.safe_load(text)), "summary": _summary(text), "text": text,
            }
    return out


def configs_command(name: str | None = None, out: str | Path | None = None, *, force: bool = False) -> int:
    """`lesde configs`: list the installed configs (name, command, what it runs), or copy
    config `name` to `out` (a .yaml file, or a folder, created if missing, that
    receives NAME.yaml; default ./NAME.yaml), refusing to replace a file unless
    `force`.

    **Returns:** the exit status: 0 done, 2 an unknown name or an existing file.
    """
    configs = installed_configs()
    if name is None:
        width = max(map(len, configs))
        for n, c in configs.items():
            print(f"{n:<{width}}  lesde {c['command']:<8}  {c['summary']}")
        print("\ncopy one out with: lesde configs NAME [--out PATH]")
        return 0
    key = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if key not in configs:
        print(f"lesde configs: no installed config {name!r}; installed: {', '.join(configs)}", file=sys.stderr)
        return 2
    target = Path(out) if out is not None else Path(f"{key}.yaml")
    if target.is_dir() or str(out).endswith(("/", os.sep)) or not target.suffix:
        target = target / f"{key}.yaml"  # a folder
    if target.exists() and not force:
        print(f"lesde configs: {target} exists; pass --force to replace it", file=sys.stderr)
        return 2
    target.parent.mkdir(parents=True, exist_ok=True)
    with resources.as_file(_folder() / f"{key}.yaml") as source:
        shutil.copyfile(source, target)
    c = configs[key]
    hint = f"lesde {c['command']} {target}" + (" --out DIR" if c["command"] != "fit" else "")
    if c["command"] == "fit":
        hint = f"lesde fit LOG --config {target} --out DIR"
    print(f"wrote {target}; run it with: {hint}")
    return 0
