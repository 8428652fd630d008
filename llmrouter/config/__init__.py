"""Configuration: the settings file (loaded once, passed in, never read from globals) and the API keys.

* :mod:`.settings` — one YAML file whose sections mirror the specification,
  over :file:`default_settings.yaml`;
* :mod:`.secrets` — API keys from the environment or a secrets file, never
  from the settings file.
"""
