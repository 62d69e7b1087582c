"""`dnas params use PRESET`: a complete params file (presets/<name>.yaml) written into the
project's two params files, each knob where it lives (docs/pipeline.md, "Two params files"):
the keys params.yaml has go to params.yaml, every other one to advanced.yaml. The files keep
their comments and order (ruamel.yaml, which DVC's `-S` also edits them with); a key the preset
does not give is removed, so that the two files together are the preset, exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnas.config import ADVANCED_FILE, _check_complete, parse_params, read_params_file
from dnas.errors import UserError
from dnas.io import write_bytes

PRESET_DIR = Path("presets")


def preset_path(name: str) -> Path:
    """A preset's file: `name` as a path when it is a file, else presets/<name>.yaml."""
    path = Path(name)
    if path.is_file():
        return path
    found = PRESET_DIR / f"{name}.yaml"
    if found.is_file():
        return found
    known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml") if p.name != "papers.yaml")
    raise UserError(f"{name}: no such preset; known: {', '.join(known) or 'none'} (or a file)")


def split(preset: dict, top_layout: dict) -> tuple[dict, dict]:
    """The preset's sections cut in two: the keys that `top_layout` (params.yaml as it is) has,
    and the rest."""
    top: dict[str, dict] = {}
    rest: dict[str, dict] = {}
    for section, values in preset.items():
        ours = top_layout.get(section) if isinstance(top_layout.get(section), dict) else {}
        for key, value in (values or {}).items():
            (top if key in ours else rest).setdefault(section, {})[key] = value
    return top, rest


def _styled(value: Any) -> Any:
    """Lists in flow style (`[0.5, 0.999]`), as the files write them."""
    from ruamel.yaml.comments import CommentedSeq

    if isinstance(value, list):
        seq = CommentedSeq(_styled(v) for v in value)
        seq.fa.set_flow_style()
        return seq
    if isinstance(value, dict):
        return {k: _styled(v) for k, v in value.items()}
    return value


def _float(representer: Any, value: float) -> Any:
    """A float as PyYAML reads it back as a float: with a dot in the mantissa (`5.0e-07`;
    ruamel.yaml writes `5e-07`, which PyYAML, and so the stages, read as a string)."""
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


def _update(doc: Any, wanted: dict) -> Any:
    """The round-trip document `doc` holding exactly `wanted` (section -> key -> value): values
    replaced in place (comments stay), missing keys added at the end of their section, keys
    not wanted removed."""
    from ruamel.yaml.comments import CommentedMap

    if not isinstance(doc, dict):
        doc = CommentedMap()
    for section in [s for s in doc if s not in wanted]:
        del doc[section]
    for section, values in wanted.items():
        if not isinstance(doc.get(section), dict):
            doc[section] = CommentedMap()
        node = doc[section]
        for key in [k for k in node if k not in values]:
            del node[key]
        for key, value in values.items():
            node[key] = _styled(value)
    return doc


def use_preset(name: str, root: Path = Path(".")) -> tuple[Path, Path]:
    """Write the preset `name` into root/params.yaml and root/ADVANCED_FILE; return the two
    paths. The preset is validated first: a bad one changes neither file."""
    from io import StringIO

    from ruamel.yaml import YAML

    source = preset_path(name)
    preset = read_params_file(source)
    parse_params(preset, str(source))
    if not isinstance(preset, dict):
        raise UserError(f"{source}: expected a mapping of sections")
    top_path, rest_path = root / "params.yaml", root / ADVANCED_FILE
    yaml = YAML()  # round trip: comments and order kept
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.representer.add_representer(float, _float)
    yaml.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    docs = []
    for path in (top_path, rest_path):
        docs.append(yaml.load(path.read_text(encoding="utf-8")) if path.is_file() else None)
    top, rest = split(preset, docs[0] if isinstance(docs[0], dict) else {})
    _check_complete(top, str(source))  # what dvc.yaml reads must stay in params.yaml
    for path, doc, wanted in ((top_path, docs[0], top), (rest_path, docs[1], rest)):
        out = StringIO()
        yaml.dump(_update(doc, wanted), out)
        write_bytes(path, out.getvalue().encode())
    return top_path, rest_path
