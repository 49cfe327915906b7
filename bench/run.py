"""./run.sh bench [--quick] [...]: regmirror beside direct pulls and distribution's proxy."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
