"""``python -m neftune.integrations.swift_plugin``: print the file to pass to ``--external_plugins``."""

from neftune.integrations.ms_swift import PLUGIN_FILE

print(PLUGIN_FILE)
