"""Build the add-on's installable zip (Edit > Preferences > Add-ons > Install): `render_farm/*.py` at its top.

    python clients/blender_addon/build.py dist/render_farm_addon.zip

The same sources give the same bytes (sorted entries, fixed timestamps); caches are left out.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent / "render_farm"
FIXED_TIME = (2024, 1, 1, 0, 0, 0)


def build(target: Path) -> Path:
    """Write the zip to `target` (its directory created) and return it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for source in sorted(PACKAGE.glob("*.py")):
            entry = zipfile.ZipInfo(f"{PACKAGE.name}/{source.name}", date_time=FIXED_TIME)
            entry.compress_type, entry.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            archive.writestr(entry, source.read_bytes())
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(build(Path(sys.argv[1])))
