"""ms-swift ``--external_plugins`` file: registers neftune's callback as ``--callbacks neftune``.

Settings from ``NEFTUNE_*`` environment variables; see :mod:`neftune.integrations.ms_swift`.
"""

from neftune.integrations.ms_swift import register

register()
