"""Write site_assets/skiplab/digits.js, the data of the in-browser lab (the opening chapter's "train it here").

    python scripts/export_skiplab.py

The file holds the package's digits split (grey levels, same order) and the lab's model and training settings,
read from skipnet (skipnet.skiplab). tests/test_skiplab.py fails when the shipped file differs from what this
script writes now.
"""
from skipnet.skiplab import write_lab_data

if __name__ == "__main__":
    path = write_lab_data()
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
