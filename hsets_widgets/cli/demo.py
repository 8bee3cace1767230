"""``hsets demo``: explain the bundled photo (scikit-image's chelsea) with the embedded model."""
from __future__ import annotations

from .explain import add_common, explain_to_folder


def add_parser(sub):
    """Register ``hsets demo`` on the sub-command parser ``sub``."""
    p = sub.add_parser("demo", help="explain the bundled example photo with the offline default model",
                       description=__doc__)
    p.add_argument("--image", default="chelsea", help="bundled example (chelsea, coffee, astronaut...)")
    add_common(p)
    return p


def run(args) -> int:
    """Explain the bundled photo with the offline default model into ``--out``."""
    return explain_to_folder(args.image, None, args)
