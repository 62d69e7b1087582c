"""`dnas plots html`: the curves of `dvc plots show` / `dvc plots diff` as one HTML page that
needs no network.

DVC's own page loads Vega, Vega-Lite and Vega-Embed from a CDN, so offline its line plots stay
empty. Here the same Vega-Lite specs (`dvc plots ... --json`, data inlined) are rendered to
SVG by vl-convert, which carries the Vega libraries in its wheel, and the image plots (the
PNGs of the `plots` stage) are embedded as data: URIs. The page has no script and no link."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from dnas.errors import UserError
from dnas.io import write_bytes


def dvc_plots_json(revs: list[str]) -> dict:
    """`dvc plots show --json` (no revs) or `dvc plots diff REV... --json`, parsed."""
    from dnas.report import dvc_json

    cmd = ["dvc", "plots", "diff", *revs, "--json"] if revs else ["dvc", "plots", "show", "--json"]
    return dvc_json(cmd, empty="{}")


def render(plots: dict, title: str) -> str:
    """The page for `dvc plots ... --json` output: one figure per plot definition."""
    try:
        import vl_convert
    except ImportError:
        raise UserError(
            "dnas plots html needs vl-convert-python: pip install -e '.[html]'"
        ) from None
    figures = []
    for name, entries in (plots.get("data") or {}).items():
        for entry in entries:
            if entry.get("type") == "vega":
                body = vl_convert.vegalite_to_svg(vl_spec=entry["content"])
            elif entry.get("type") == "image" and Path(entry.get("url", "")).is_file():
                data = base64.b64encode(Path(entry["url"]).read_bytes()).decode()
                revs = ", ".join(entry.get("revisions") or [])
                body = f'<img alt="{html.escape(revs)}" src="data:image/png;base64,{data}">'
            else:
                continue
            figures.append(f"<figure><figcaption>{html.escape(name)}</figcaption>{body}</figure>")
    if not figures:
        raise UserError("dvc plots found nothing to draw: run the pipeline first (`dvc repro`)")
    style = (
        "body{font-family:sans-serif;margin:1.5em}figure{display:inline-block;margin:1em;"
        "vertical-align:top}figcaption{font-weight:bold}img{max-width:100%}"
    )
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>\n"
        + "\n".join(figures)
        + "\n</body></html>\n"
    )


def write_offline_html(revs: list[str], out: Path) -> Path:
    title = "dnas plots: " + (" vs ".join(revs) if revs else "workspace")
    target = Path(out) / "index.html"
    write_bytes(target, render(dvc_plots_json(revs), title).encode())
    return target
