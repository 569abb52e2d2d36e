"""The folder of ms-swift's ``--external_plugins`` file (see :mod:`neftune.integrations.ms_swift`).

Keep nothing else here: ms-swift puts this folder first on ``sys.path``. Part of the library:
its plugin file imports only :mod:`neftune.integrations.ms_swift` (and ms-swift).
"""
