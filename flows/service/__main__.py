"""``python -m flows.service``: the local service (see :mod:`flows.service.daemon`)."""

import sys

from config.native import quiet_blas_threads

if __name__ == "__main__":
    quiet_blas_threads()  # before numpy loads
    from flows.service.daemon import main

    sys.exit(main())
