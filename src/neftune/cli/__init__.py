"""The ``neftune`` command line: the top layer; it may import every other part of neftune.

One module per command (``train``, ``evaluate`` for ``eval``, ``export``, ``compare``, ``sweep``,
``analyze``, ``viz``, ``report``, ``ifeval``, ``frameworks`` for ``llamafactory`` / ``trl``), all over
one declaration of the options (:mod:`.options`) and the shared plumbing of :mod:`.common`;
:mod:`.app` registers them. ``compare`` and ``sweep`` share :mod:`.grid`. Nothing below this
package imports it.
"""

from .app import app, main

__all__ = ["app", "main"]
