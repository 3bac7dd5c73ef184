"""``python -m napari_connectome`` runs the command line."""

import sys

from napari_connectome.cli import main

sys.exit(main())
