"""``python -m mixformerv2.vot --config C --checkpoint K [--device D]``: the TraX tracker process (see ``server``)."""
import sys

from .server import main

sys.exit(main())
