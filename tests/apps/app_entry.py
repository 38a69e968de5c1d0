"""Runs the real app.py under AppTest from a folder without pages/.

AppTest resets Streamlit's page mode before every run; next to a pages/ folder that means
the legacy mode, which serves page files directly instead of running app.py's navigation.
"""

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
runpy.run_path(str(ROOT / "app.py"), run_name="__main__")
