"""``python -m neftune.cli`` (what ``torchrun`` / ``accelerate launch -m`` run): the ``neftune`` command."""

from .app import main

main()
