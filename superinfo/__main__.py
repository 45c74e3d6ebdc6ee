"""``python -m superinfo ...`` (and ``torchrun ... -m superinfo train ...``): the ``superinfo`` command."""
import sys

from .cli import main

sys.exit(main())
