"""A check report in a few lines, for people and for the debugger's prompt."""

from __future__ import annotations

DETAIL_CHARS = 600


def check_summary(report: dict, detail_chars: int = DETAIL_CHARS) -> str:
    """`passed ...` or `failed ...` with each failed check's reason, then flags and warnings."""
    static = report.get("static") or {}
    lines = []
    if static.get("errors"):
        lines.append(f"failed the static checks ({len(static['errors'])} problems):")
        lines.extend(f"- {error}" for error in static["errors"])
    else:
        checks = report.get("checks") or []
        failed = [c for c in checks if c.get("hard", True) and not c.get("ok")]
        if report.get("ok"):
            params = report.get("params_per_layer")
            size = f", {params:,} parameters per layer" if params is not None else ""
            lines.append(f"passed {sum(1 for c in checks if c.get('ok'))} checks in {report.get('seconds', 0):.1f} s"
                         f"{size}")
        else:
            names = ", ".join(c["name"] for c in failed) or "incomplete"
            lines.append(f"failed {names}" + (f" ({report['reason']})" if report.get("reason") else "") + ":")
            lines.extend(f"- {c['name']}: {_clip(c.get('detail', ''), detail_chars)}" for c in failed)
    for c in report.get("checks") or []:
        if not c.get("hard", True) and c.get("warning"):
            lines.append(f"flagged {c['name']}: {_clip(c.get('detail', ''), detail_chars)}")
    lines.extend(f"warning: {w}" for w in static.get("warnings") or [])
    return "\n".join(lines)


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + " ..."
