"""The whole params file: `Params` (the sections and the checks across them), reading a
params file safely, one error message per problem, and the keys dvc.yaml needs."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    model_validator,
)

from dnas.config.base import (
    DATASETS,
    Section,
    _short_repr,
    space_of,
    spaces,
)
from dnas.config.common import (
    Common,
)
from dnas.config.prepare import (
    Prepare,
    is_text,
    text_datasets,
)
from dnas.config.search import (
    Search,
)
from dnas.config.train import (
    Evaluate,
    Plots,
    Train,
)
from dnas.errors import UserError, first_line


class Params(Section):
    common: Common = Common()
    prepare: Prepare = Prepare()
    # Built when a Params is (the search's checks ask the algorithms, which import this module).
    search: Search = Field(default_factory=Search)
    train: Train = Train()
    evaluate: Evaluate = Evaluate()
    plots: Plots = Plots()

    @model_validator(mode="after")
    def _datasets_prepared(self) -> Params:
        prepared = self.prepare.datasets
        for stage in ("search", "train"):
            name = getattr(self, stage).dataset
            if name not in prepared:
                known = [*DATASETS, *self.prepare.custom]
                close = difflib.get_close_matches(name, known, n=1)
                if name not in known:
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise ValueError(f"{stage}.dataset: unknown dataset {name!r}{hint}")
                raise ValueError(
                    f"{stage}.dataset is {name!r} but prepare.datasets {prepared}"
                    f" does not prepare it; add it there"
                )
        self._text_track("search", space_of(self.search.space).text)
        lm = train_is_language_model(self)
        if lm is not None:
            self._text_track("train", lm)
        return self

    def _text_track(self, stage: str, lm: bool) -> None:
        """A text dataset goes with the recurrent cell (the language-model track), an image
        dataset with the CNN spaces; anything else is one clear error."""
        name = getattr(self, stage).dataset
        text = is_text(name, self.prepare)
        if stage == "search":
            what = f"search.space is {self.search.space!r} (the recurrent cell)"
            images = [n for n, kind in spaces().items() if not kind.text]
            fix = f"set search.space to {' or '.join(images)}"
        else:
            what = f"train.genotype {_short_repr(self.train.genotype)} is a recurrent cell"
            if self.train.genotype.strip() == "searched":
                what = "train.genotype 'searched' retrains the rnn search's cell"
            fix = "retrain a recurrent cell (search.space rnn, or a published *_RNN genotype)"
        if lm and not text:
            raise ValueError(
                f"{what}, a language model: {stage}.dataset needs a text corpus "
                f"({', '.join(text_datasets(self.prepare))}, or your own with format: text), "
                f"not {name!r}"
            )
        if text and not lm:
            images = ", ".join(n for n in self.prepare.datasets if not is_text(n, self.prepare))
            raise ValueError(
                f"{stage}.dataset is {name!r}, a text corpus for the language-model track; "
                f"{fix}, or use an image dataset ({images or 'digits'})"
            )


def check_track(genotype: Any, spec: str, dataset: str, prepare: Prepare) -> bool:
    """Whether `genotype` (named by `train.genotype = spec`) is retrained as a language model
    on `dataset` (a text corpus: `is_text`); a recurrent cell on an image dataset, or a CNN
    cell on a text corpus, is a `UserError` (the train stage's check, which the validate stage
    makes first)."""
    text = is_text(dataset, prepare)
    recurrent = space_of(genotype.space).text
    if recurrent != text:
        kind = "a recurrent cell" if recurrent else f"a {genotype.space} CNN cell"
        need = "a text corpus" if recurrent else "an image dataset"
        shown = _short_repr(spec)
        where = f"train.dataset {dataset!r}"
        raise UserError(f"train.genotype {shown} is {kind}: {where} must be {need}")
    return text


def train_is_language_model(p: Params) -> bool | None:
    """Whether `train` retrains a recurrent cell: True for the rnn search's cell or a published
    recurrent genotype, False for CNN cells, None for a genotype file (known when it is read)."""
    spec = p.train.genotype.strip()
    if spec in ("searched", "random"):  # random: a random cell of the search space
        return space_of(p.search.space).text
    if spec.startswith("|"):
        return False
    from dnas.spaces.published import published  # lazy: it imports torch

    entry = published(spec)
    if entry is not None:
        return space_of(entry.genotype.space).text
    return None


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the field at `loc` (for 'did you mean' hints)."""
    model: Any = Params
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (
            isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ):
            return None
        model = field.annotation
    return model


def _describe(err: dict) -> str:
    loc = tuple(p for p in err["loc"] if not str(p).startswith("function-after["))
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        owner = _model_at(loc[:-1])
        valid = sorted(owner.model_fields) if owner else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"did you mean {'.'.join(map(str, loc[:-1] + (close[0],)))!r}? " if close else ""
        return f"{key}: unknown key; {hint}valid keys here: {', '.join(valid)}"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error" or not loc:
        return f"{key}: {msg}" if key else msg
    return f"{key} = {_short_repr(err['input'])}: {msg}"


MAX_PROBLEMS_SHOWN = 10


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [_describe(e) for e in exc.errors()]
    if len(lines) == 1:
        return f"{source}: {lines[0]}"
    shown = lines[:MAX_PROBLEMS_SHOWN]
    if len(lines) > len(shown):
        shown.append(f"... and {len(lines) - len(shown)} more")
    return f"{source}: {len(lines)} problems\n" + "\n".join(f"  - {line}" for line in shown)


def parse_params(raw: Any, source: str = "params") -> Params:
    """Validate a params mapping; raise `UserError` with one readable message."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, source)) from None
    _require_language_model_knobs(params, raw, source)
    return params


def _require_language_model_knobs(params: Params, raw: dict, source: str) -> None:
    """The language-model knobs (`search.rnn`, `train.rnn`) live only in the params files of
    that track (presets/rnn-pydoc.yaml, the PTB/WT2 presets), so that a CNN run's params, and
    `dvc exp show`, list only what the CNN stages read. A run that needs them must have them in
    its file: DVC tracks the file, not this module's defaults."""
    needed = []
    if space_of(params.search.space).text:
        needed.append("search")
    if train_is_language_model(params):
        needed.append("train")
    missing = [f"{s}.rnn" for s in needed if "rnn" not in (raw.get(s) or {})]
    if missing:
        raise UserError(
            f"{source}: {' and '.join(missing)} missing: the language-model track needs its "
            "knobs in the params file; start from a language-model preset "
            "(dnas params use rnn-pydoc)"
        )


# What dvc.yaml reads from params.yaml (its `params:` entries and `${...}` interpolations;
# tests/test_hostile_params.py compares the two): DVC cannot run the pipeline on a file that
# lacks one, so the validate stage and `dnas params check` require them all.
REQUIRED_KEYS = (
    "common",
    "common.seed",
    "prepare",
    "prepare.datasets",
    "search",
    "search.dataset",
    "train",
    "train.dataset",
    "train.genotype",
)

# A params file is a few kilobytes; PyYAML reads about 150 kB a second, so a file of
# megabytes (a list of a million items) would take minutes to refuse.
MAX_PARAMS_BYTES = 256 * 1024

# Containers in a params file once aliases are expanded: a few hundred in a real one.
MAX_PARAMS_NODES = 100_000


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"duplicate key {key!r} at line {line}")
        self.key, self.line = key, line


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML
    keeps the last; DVC refuses the file)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable: the safe loader's own error follows
                    continue
                if duplicate:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: Exception) -> str:
    """One line for a YAML error (PyYAML's span several, with the offending text)."""
    if isinstance(exc, _DuplicateKey):
        return f"key {exc.key!r} given twice (again at line {exc.line}); keep one (DVC refuses it)"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"not valid YAML: {exc.problem or exc.context}{where}"
    return f"not valid YAML: {first_line(exc)}"


def _check_tree(value: Any, path: str) -> None:
    """Only plain YAML values (mappings with string keys, lists, strings, numbers, booleans,
    null), no structure that contains itself, and not more than MAX_PARAMS_NODES containers
    once aliases are expanded (an alias bomb would otherwise take pydantic hours)."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def walk(v: Any, key: str) -> int:
        if v is None or isinstance(v, (str, int, float, bool)):
            return 0
        if not isinstance(v, (dict, list)):
            raise UserError(
                f"{path}: {key or 'the file'} is a YAML {type(v).__name__}, not a params value;"
                " quote it if it is a string"
            )
        if id(v) in open_:
            raise UserError(f"{path}: {key or 'the file'} contains itself (a recursive alias)")
        if id(v) in sizes:
            return sizes[id(v)]
        open_.add(id(v))
        items = v.items() if isinstance(v, dict) else enumerate(v)
        total = 1
        for k, child in items:
            if isinstance(v, dict) and not isinstance(k, str):
                raise UserError(f"{path}: {key + '.' if key else ''}{k!r}: a key must be a string")
            total += walk(child, f"{key}.{k}" if key else str(k))
            if total > MAX_PARAMS_NODES:
                raise UserError(f"{path}: {key or 'the file'} is far too large for a params file")
        open_.discard(id(v))
        sizes[id(v)] = total
        return total

    walk(value, "")


def _check_complete(raw: dict, source: str) -> None:
    """Every key dvc.yaml reads must be in the file (REQUIRED_KEYS)."""
    for dotted in REQUIRED_KEYS:
        section, _, key = dotted.partition(".")
        holder = raw if not key else raw.get(section)
        name = key or section
        if isinstance(holder, dict) and name not in holder:
            where = f"section {section!r}" if not key else f"key {dotted!r}"
            raise UserError(
                f"{source}: {where} missing; dvc.yaml reads it, so the file must give it"
                " (start from the project's params.yaml or a preset)"
            )


def read_params_file(path: str | Path) -> Any:
    """The parsed YAML of a params file, as `load_params` checks it; `UserError` for a
    missing, huge, non-UTF-8, malformed or duplicate-key file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: params file not found (run from the project root)")
    size = path.stat().st_size
    if size > MAX_PARAMS_BYTES:
        raise UserError(
            f"{path}: {size} bytes, far larger than a params file (at most {MAX_PARAMS_BYTES})"
        )
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start});"
            " save it as UTF-8"
        ) from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be a params file") from None
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError) as exc:
        # ValueError etc.: PyYAML's constructors on `!!int abc`, `!!timestamp x`, an int of
        # more than 4300 digits.
        raise UserError(f"{path}: {_yaml_problem(exc)}") from None
    _check_tree(raw, str(path))
    return raw


# The rarely changed knobs: a second file beside params.yaml, same sections, read under it
# (docs/pipeline.md, "Two params files"). DVC shows every key of params.yaml in `dvc exp show`;
# this file shows as one column (its hash).
ADVANCED_FILE = "advanced.yaml"


def with_advanced(raw: Any, path: str | Path) -> tuple[Any, str]:
    """`raw` (the parsed params file at `path`) and the ADVANCED_FILE beside it, merged section
    by section, and the name to give in messages. A key in both is an error: a knob has one
    home, so that `dvc exp run -S` of either file is never overridden by the other. A file
    with no ADVANCED_FILE beside it (a preset, a test's own) stands alone."""
    extra = Path(path).parent / ADVANCED_FILE
    if Path(path).name == ADVANCED_FILE or not extra.is_file() or not isinstance(raw, dict):
        return raw, str(path)
    base = read_params_file(extra)
    if base is None:
        return raw, str(path)
    if not isinstance(base, dict):
        raise UserError(f"{extra}: expected a mapping of sections, got {type(base).__name__}")
    merged = dict(base)
    for section, value in raw.items():
        below = merged.get(section)
        if isinstance(below, dict) and isinstance(value, dict):
            both = sorted(set(below) & set(value))
            if both:
                raise UserError(
                    f"{path}: {section}.{both[0]} is also in {extra}; give each knob in one of"
                    " the two files (`dnas params use PRESET` writes a preset into both)"
                )
            merged[section] = {**below, **value}
        else:
            merged[section] = value
    return merged, f"{path} + {extra}"


def load_params(path: str | Path = "params.yaml", complete: bool = False) -> Params:
    """The params of a file, over the ADVANCED_FILE beside it (`with_advanced`). `complete`:
    also require every key dvc.yaml reads from the file itself (REQUIRED_KEYS; the validate
    stage and `dnas params check`)."""
    raw = read_params_file(path)
    merged, source = with_advanced(raw, path)
    params = parse_params(merged, source)
    if complete:
        _check_complete(raw or {}, str(path))
    return params
