"""The core import path does not need matplotlib: heatmap_overlay imports it when called."""

import subprocess
import sys


def test_import_gradjax_without_matplotlib():
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # any `import matplotlib` now fails
        "import gradjax, gradjax.attribution as a\n"
        "assert callable(a.heatmap_overlay)\n"
        "try:\n"
        "    a.heatmap_overlay([[0.0]], [[1.0]])\n"
        "except ImportError:\n"
        "    print('lazy')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "lazy"
