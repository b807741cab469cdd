"""The README's pictures of the MLflow UI, made from the screenshots the browser test takes.

    .venv/bin/python -m pytest tests/test_browser.py      # writes outputs/browser/*.png
    .venv/bin/python scripts/ui_screenshots.py            # writes docs/ui/*.png

Each is cut to the part of the page that matters, scaled to 1120 pixels wide and reduced
to 96 colours, so that the five together stay near 200 KB.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SOURCE, TARGET = ROOT / "outputs" / "browser", ROOT / "docs" / "ui"
WIDTH, COLORS = 1120, 96
# screenshot -> the height (in the 1600-pixel-wide screenshot) kept from the top
KEPT = {
    "sweep_view_table": 540,
    "sweep_view_charts": 720,
    "experiment_parent_children": 480,
    "parent_note": 980,
    "compare_scatter": 640,
}


def main() -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    for name, height in KEPT.items():
        image = Image.open(SOURCE / f"{name}.png").convert("RGB")
        image = image.crop((0, 0, image.width, min(height, image.height)))
        image = image.resize((WIDTH, round(image.height * WIDTH / image.width)), Image.LANCZOS)
        image = image.quantize(colors=COLORS, method=Image.Quantize.MEDIANCUT)
        image.save(TARGET / f"{name}.png", optimize=True)
        print(TARGET / f"{name}.png", f"{(TARGET / f'{name}.png').stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
